"""The sent log: one entry per send attempt, as the API shows it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mailer.delivery.failures import Failure
from mailer.delivery.transports.base import Delivery
from mailer.ids import new_id, utc_now
from mailer.tracking.models import DeliveryEvent, DeliveryStatus

EntryKind = Literal["test", "document", "automation"]
# unknown: may have been sent, unrecorded; suppressed: an automated email to an address on the
# company's suppression list, not sent
EntryStatus = Literal["sent", "failed", "queued", "unknown", "suppressed"]


class AttachmentInfo(BaseModel):
    filename: str
    size: int


class SentLogEntry(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str
    kind: EntryKind
    status: EntryStatus
    from_: str = Field(alias="from")
    to: list[str]
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    subject: str
    profile: str | None = None
    document: dict[str, Any] | None = None
    work_order_id: str | None = None
    automation: str | None = None
    message_id: str | None = None
    attachments: list[AttachmentInfo] = Field(default_factory=list)
    refused: dict[str, str] = Field(default_factory=dict)
    error: dict[str, Any] | None = None
    attempts: int = 1
    created_at: str
    sent_at: str | None = None
    resent_from: str | None = None
    # What happened after the server took it (SES events, bounce reports, opens): `sent` until then;
    # none for an email that was not sent.
    delivery_status: DeliveryStatus | None = None
    events: list[DeliveryEvent] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sent_is_a_delivery_status(self) -> SentLogEntry:
        if self.status == "sent" and self.delivery_status is None:
            self.delivery_status = "sent"  # also for entries written before tracking existed
        return self

    @classmethod
    def attempt(
        cls,
        *,
        kind: EntryKind,
        delivery: Delivery | None,
        failure: Failure | None,
        created_at: str | None = None,
        **fields: Any,
    ) -> SentLogEntry:
        """The entry of one send attempt: `sent` with the message id, or `failed` with the failure."""
        sent = failure is None
        return cls.model_validate(
            {
                "id": new_id(),
                "kind": kind,
                "status": "sent" if sent else "failed",
                "message_id": delivery.message_id if delivery and sent else None,
                "refused": delivery.refused if delivery else {},
                "error": failure.as_dict() if failure else None,
                "created_at": created_at or utc_now(),
                "sent_at": utc_now() if sent else None,
                **fields,
            }
        )


class EmailPage(BaseModel):
    items: list[SentLogEntry]
    next_cursor: str | None = None
