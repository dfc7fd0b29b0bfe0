"""What the outbox worker needs to know about each kind of record it sends automated email about.

The worker is one engine: read the batch, check it, claim it in the ledger, admit it under the
sending budgets, send, log, finish. What differs between a work order, an invoice, a customer's
statement and a raised document event is only this: how its records are read (once for the batch),
whether one is still due its email, how the email is composed, and how it is named in the sent log
and in a failure notice. A `RecordKind` says that for the automations it serves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from mailer.automations.outbox import OutboxMessage
from mailer.delivery.message import OutgoingMessage
from mailer.identity import Caller
from mailer.settings.service import SendingProfile


@dataclass
class Job:
    """One automated email as the worker's kinds see it: the queued message, the wording it is sent
    with, and what `read` found (the record, and a related one such as a work order's parent)."""

    message: OutboxMessage
    wording: Any = None  # the automation's, rule's, schedule's or event's saved (or default) wording
    record: Any = None  # None when the record is gone
    related: Any = None
    entry: dict[str, Any] = field(default_factory=dict)  # sent-log fields `compose` adds (attachments)

    @property
    def tenant_id(self) -> str:
        return self.message.tenant_id


@dataclass(frozen=True)
class Recipient:
    """Whom the email is for, as a failure notice and a failed entry name them."""

    name: str | None
    email: str | None


class RecordKind(Protocol):
    def wording(self, tenant_id: str, message: OutboxMessage) -> Any:
        """The saved (or default) wording of the message's automation; the worker keeps it for the
        batch under `wording_key`. MailerError when it cannot be read (the record comes back)."""
        ...

    def wording_key(self, message: OutboxMessage) -> str: ...

    def read(self, jobs: list[Job]) -> None:
        """Set `record` (and `related`) on each job, with as few reads as the batch allows.
        MailerError when they cannot be read: nothing was claimed, every job comes back."""
        ...

    def why_not(self, job: Job) -> str | None:
        """Why the email must not be sent now, or None (checked again right before the claim)."""
        ...

    def compose(self, job: Job, profile: SendingProfile) -> OutgoingMessage:
        """The email. MailerError: something it needs could not be read (the claim goes back);
        any other exception: its wording cannot be filled in (a permanent failure)."""
        ...

    def recipient(self, job: Job) -> Recipient: ...

    def to_addresses(self, job: Job) -> list[str]:
        """The addresses the email goes to (its To), as the suppression list is checked for them."""
        ...

    noun: str  # what a record is called in a failure notice: "work order", "invoice"

    def number(self, job: Job) -> str:
        """The record's number as its users know it: `WO-1001`, `INV-1001`, a customer's name."""
        ...

    def entry_fields(self, job: Job) -> dict[str, Any]:
        """The sent-log entry's own fields (`work_order_id`, `document`, `automation`, ...)."""
        ...

    def sender_of(self, job: Job) -> Caller | None:
        """Whose settings send it: None for the company account; a user for a document event sent
        as its caller (the user's own settings when saved, else the company's)."""
        ...

    def fix_at(self, message: OutboxMessage) -> str:
        """Where the wording is changed: the route a template error's hint names."""
        ...
