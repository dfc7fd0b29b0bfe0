"""Document events as a record kind of the engine: the confirmation email of a raised event.

The record is the event itself, carried in the outbox message (the document, the recipients, the
attachments checked when it was raised, who raised it), so the worker reads nothing but the
wording. That wording is read again at send time: an event switched off after it was raised is
not sent. The attachments are loaded again too, under the same policy as document email; a file
deleted (or changed into something else) since the raise fails the email for good, naming it.
The sent-log entry takes the id the raise answered with (`email_id`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from mailer.automations.compose import company_of
from mailer.automations.kinds import Job, Recipient
from mailer.automations.outbox import OutboxMessage
from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.message import OutgoingMessage, Sender, build_message
from mailer.documents.attachments import LoadedAttachments, load_attachments
from mailer.documents.event_models import DOCUMENT_EVENT, DocumentAutomation, RaisedEvent
from mailer.documents.events import DocumentAutomationService, label, render_event
from mailer.errors import MailerError, ServiceUnavailable
from mailer.identity import Caller
from mailer.settings.service import SendingProfile, SettingsService


@dataclass
class DocumentEventKind:
    config: MailerConfig
    automations: DocumentAutomationService
    settings: SettingsService
    attachments: AttachmentStore
    noun: str = "document"

    def wording(self, tenant_id: str, message: OutboxMessage) -> Any:
        return self.automations.get(tenant_id, message.occurrence)

    def wording_key(self, message: OutboxMessage) -> str:
        return message.occurrence

    def read(self, jobs: list[Job]) -> None:
        """The event each message carries; None when its payload is not one (it is then skipped)."""
        for job in jobs:
            try:
                job.record = RaisedEvent.model_validate(job.message.payload or {})
            except ValidationError:
                job.record = None

    def why_not(self, job: Job) -> str | None:
        automation: DocumentAutomation = job.wording
        if not automation.active:
            return "automation inactive"
        if job.record is None:
            return "the message carries no event"
        return None

    def compose(self, job: Job, profile: SendingProfile) -> OutgoingMessage:
        automation: DocumentAutomation = job.wording
        event: RaisedEvent = job.record
        loaded = self._attachments(job, automation, event)
        sender = profile.settings
        company = sender if sender.profile == "company" else company_of(self.settings, job.tenant_id)
        rendered = render_event(automation, event.document, company, sender, datetime.now(UTC))
        archive = [b for b in (company.bcc if company else None, sender.bcc) if b]
        job.entry["profile"] = sender.profile
        job.entry["attachments"] = loaded.infos
        return build_message(
            sender=Sender(sender.from_email, sender.from_name, sender.reply_to),
            to=event.to,
            bcc=list(dict.fromkeys(a for a in archive if a not in event.to)),
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            attachments=loaded.attachments,
            automated=True,
        )

    def recipient(self, job: Job) -> Recipient:
        event: RaisedEvent | None = job.record
        if event is None:
            return Recipient(None, None)
        return Recipient(event.document.customer_name, event.to[0])

    def to_addresses(self, job: Job) -> list[str]:
        event: RaisedEvent | None = job.record
        return list(event.to) if event is not None else []

    def number(self, job: Job) -> str:
        event: RaisedEvent | None = job.record
        return event.document.number if event else job.message.record_id

    def entry_fields(self, job: Job) -> dict[str, Any]:
        """The entry is the one the raise named (`email_id`), dated when the event was raised."""
        event: RaisedEvent | None = job.record
        automation: DocumentAutomation | None = job.wording
        fields: dict[str, Any] = {
            "id": job.message.record_id,
            "automation": DOCUMENT_EVENT,
            "profile": "company" if automation is not None and automation.sender == "company" else None,
        }
        if event is not None:
            fields |= {"document": event.document.model_dump(mode="json"), "created_at": event.raised_at}
        return fields

    def sender_of(self, job: Job) -> Caller | None:
        automation: DocumentAutomation = job.wording
        event: RaisedEvent | None = job.record
        if automation.sender != "caller" or event is None or event.raised_by.tenant_id != job.tenant_id:
            return None  # the company account
        return event.raised_by.caller()

    def fix_at(self, message: OutboxMessage) -> str:
        return f"/document-automations/{message.occurrence}"

    def _attachments(self, job: Job, automation: DocumentAutomation, event: RaisedEvent) -> LoadedAttachments:
        refs = event.attachments if automation.attach_document else []
        try:
            return load_attachments(
                self.attachments, job.tenant_id, refs, self.config.attachment_max_bytes, resending=False
            )
        except ServiceUnavailable:
            raise  # the bucket could not be read: the claim goes back for the redelivery
        except MailerError as exc:  # gone, of another size, or not what it claims: it will not get better
            raise DeliveryFailed(attachment_unusable(job.message.occurrence, event, exc)) from None


def attachment_unusable(event_name: str, event: RaisedEvent, exc: MailerError) -> Failure:
    return Failure(
        stage="attachments",
        category="attachment_unusable",
        transient=False,
        hint=f"An attachment of {label(event_name)} for {event.document.number} could not be attached "
        f"({exc.detail}). Upload the file again and raise the event again with its new upload_id.",
    )
