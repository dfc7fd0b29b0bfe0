"""The outbox: what waits on SQS for the worker.

Two kinds of message share the queue. An automated email (`OutboxMessage`, kind `automation`) is
the work itself; messages queued before kinds existed carry no `kind` and are automated emails. A
sent-log entry (`SentLogMessage`, kind `sent_log`) is the record of a send whose sent-log write
failed: the worker writes it later, with the same entry id, so writing it twice keeps one entry. A
document email's entry carries its stored `request` too, which its resend needs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, RootModel, Tag

from mailer.automations.models import AutomationType
from mailer.sent_log.models import SentLogEntry


class OutboxMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["automation"] = "automation"
    tenant_id: str
    automation: AutomationType
    work_order_id: str
    occurrence: str  # the reminder's start date, or the status change's transition (status:en_route:v7)
    deferrals: int = Field(default=0, ge=0)  # how often a sending budget put this message back on the queue

    @property
    def ledger_key(self) -> tuple[str, str, str, str]:
        return self.tenant_id, self.automation, self.work_order_id, self.occurrence


class SentLogMessage(BaseModel):
    """A sent-log entry to write: the send happened, its entry could not be written at the time."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["sent_log"] = "sent_log"
    tenant_id: str
    entry: SentLogEntry
    # What a resend needs (a document email's), stored beside the entry; left out of the body when
    # None, so a message without one reads as before.
    request: dict[str, Any] | None = Field(default=None, exclude_if=lambda value: value is None)


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
