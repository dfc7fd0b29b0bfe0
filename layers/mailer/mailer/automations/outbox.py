"""The outbox: what waits on SQS for the worker.

Two kinds of message share the queue. An automated email (`OutboxMessage`, kind `automation`) is
the work itself; messages queued before kinds existed carry no `kind` and are automated emails. One
message format serves every automation: the record it is about (`record_id`: a work order, an
invoice, a customer, a raised document event) and the occurrence, which together with the tenant and
the automation are its key in the send ledger. Messages of the first round name the record
`work_order_id`; they still read. A
sent-log entry (`SentLogMessage`, kind `sent_log`) is the record of a send whose sent-log write
failed: the worker writes it later, with the same entry id, so writing it twice keeps one entry. A
document email's entry carries its stored `request` too, which its resend needs.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Discriminator, Field, RootModel, Tag

from mailer.sent_log.models import SentLogEntry

# Every automation the engine sends: three about work orders, one about invoices, one about
# customers (statements), one about document events raised by the business application.
EngineAutomation = Literal[
    "reminder",
    "confirmation",
    "thank_you",
    "invoice_reminder",
    "statement",
    "document_event",
    "document_email",
]
DOCUMENT_EMAIL: Literal["document_email"] = (
    "document_email"  # a document email queued by POST /documents/email (queue: true)
)


def _left_out_when_none(value: Any) -> bool:
    return value is None


class OutboxMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Literal["automation"] = "automation"
    tenant_id: str
    automation: EngineAutomation
    record_id: str = Field(validation_alias=AliasChoices("record_id", "work_order_id"))
    # A reminder's start date; a status change's transition (status:en_route:v7); an invoice rule's
    # send (overdue:2); a statement's date; a document event's name.
    occurrence: str
    deferrals: int = Field(default=0, ge=0)  # how often a sending budget put this message back on the queue
    # The day the run planned it for (invoice reminders: the rule must still fall on it).
    run_date: dt.date | None = Field(default=None, exclude_if=_left_out_when_none)
    # What a record kind needs beside its stored record (a document event's document and recipients).
    payload: dict[str, Any] | None = Field(default=None, exclude_if=_left_out_when_none)

    @property
    def work_order_id(self) -> str:
        return self.record_id

    @property
    def ledger_key(self) -> tuple[str, str, str, str]:
        return self.tenant_id, self.automation, self.record_id, self.occurrence


class SentLogMessage(BaseModel):
    """A sent-log entry to write: the send happened, its entry could not be written at the time."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["sent_log"] = "sent_log"
    tenant_id: str
    entry: SentLogEntry
    # What a resend needs (a document email's), stored beside the entry; left out of the body when
    # None, so a message without one reads as before.
    request: dict[str, Any] | None = Field(default=None, exclude_if=_left_out_when_none)


QueuedMessage = OutboxMessage | SentLogMessage


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("kind", "automation"))
    return str(getattr(value, "kind", "automation"))


class _Queued(
    RootModel[
        Annotated[
            Annotated[OutboxMessage, Tag("automation")] | Annotated[SentLogMessage, Tag("sent_log")],
            Discriminator(_kind),
        ]
    ]
):
    """Either kind, told apart by `kind` (absent: an automated email)."""


def parse_queued(body: str | bytes) -> QueuedMessage:
    """A queue message's body as its kind; a body without `kind` is an automated email."""
    return _Queued.model_validate_json(body).root
