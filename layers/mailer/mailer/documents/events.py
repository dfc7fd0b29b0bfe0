"""Document events: a confirmation email when the business application raises an event about a
document (an order allocated, a shipment shipped, a bill paid, ...).

The wording of each event is the company's (`DocumentAutomationService`, defaults until saved,
checked at save time with the document merge fields). Raising one (`DocumentEvents.raise_event`)
decides whether an email goes out, checks the attachments it will carry, and queues it on the
outbox: the worker sends it (automations/document_event_kind.py), so the request never waits for a
mail server. The answer's `email_id` is the id of the sent-log entry the worker writes; nothing is
written to the sent log at raise time, so `GET /emails/{email_id}` finds the entry once the worker
has sent (or failed) it, and an email the worker skips (its automation switched off meanwhile)
leaves no entry behind that would claim it is still to come.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from mailer.automations.outbox import OutboxMessage
from mailer.config import MailerConfig
from mailer.dal import keys
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.dal.outbox_queue import OutboxQueue
from mailer.dal.settings_table import SettingsStore
from mailer.delivery.html_text import html_to_text
from mailer.documents.attachments import check_size, check_total, find_uploads
from mailer.documents.event_models import (
    DOCUMENT_EVENT,
    DOCUMENT_EVENTS,
    SAMPLE_DOCUMENTS,
    DocumentAutomation,
    DocumentAutomationInput,
    DocumentEventRequest,
    DocumentEventResult,
    RaisedBy,
    RaisedEvent,
    default_document_automation,
)
from mailer.documents.models import AttachmentRef, DocumentRef, Rendered, document_context
from mailer.errors import FieldError, Forbidden, InvalidInput, NotFound, PayloadTooLarge, ServiceUnavailable
from mailer.identity import Caller
from mailer.ids import new_id, utc_now
from mailer.settings.models import SettingsView
from mailer.settings.service import SettingsService
from mailer.templating.engine import check_template, render, render_subject
from mailer.templating.fields import sample_context

PREFIX = keys.DOCUMENT_AUTOMATION_PREFIX
MAX_MESSAGE_BYTES = 64_000  # an outbox message of a raised event; SQS takes 256 KB
# Stands in for the sender of a preview before any settings are saved: of what it fills in, only the
# document and today are kept; company and sender keep the merge fields' examples.
_SAMPLE_SENDER = SettingsView(
    profile="company", transport="smtp", from_name="Jamie Cole", from_email="jamie@acme.example"
)


def known_event(event: str) -> str:
    if event not in DOCUMENT_EVENTS:
        raise NotFound(f"No document event {event}; the events are {', '.join(DOCUMENT_EVENTS)}.")
    return event


def label(event: str) -> str:
    return f"the {event} confirmation"


def render_event(
    automation: DocumentAutomation,
    document: DocumentRef,
    company: SettingsView | None,
    sender: SettingsView | None,
    now: datetime,
) -> Rendered:
    """The event's wording filled in with the document, the company and the sender, as document
    email fills its templates; without settings (a preview), company and sender keep their samples."""
    filled = document_context(document, company, sender or company or _SAMPLE_SENDER, now)
    if sender is None and company is None:
        filled = {"document": filled["document"], "today": filled["today"]}
    context = sample_context("document") | filled
    html = render(automation.body_html, context, html=True)
    text = render(automation.body_text, context, html=False) if automation.body_text else html_to_text(html)
    return Rendered(subject=render_subject(automation.subject, context), html=html, text=text)


class DocumentAutomationService:
    """Reading and saving the company's document-event wording; previews of it."""

    def __init__(self, store: SettingsStore, settings: SettingsService, clock: Callable[[], str]) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock

    def get(self, tenant_id: str, event: str) -> DocumentAutomation:
        item = self.store.get(tenant_id, PREFIX + known_event(event))
        if item is None:
            return default_document_automation(event)
        return DocumentAutomation.model_validate(item | {"event": event, "is_default": False})

    def list(self, tenant_id: str) -> list[DocumentAutomation]:
        saved = self.store.list_prefix(tenant_id, PREFIX)
        return [
            DocumentAutomation.model_validate(saved[e] | {"event": e, "is_default": False})
            if e in saved
            else default_document_automation(e)
            for e in DOCUMENT_EVENTS
        ]

    def save(self, caller: Caller, event: str, body: DocumentAutomationInput) -> DocumentAutomation:
        known_event(event)
        if not caller.is_admin:
            raise Forbidden("Only an administrator can change the company's document event email.")
        if body.event is not None and body.event != event:
            raise InvalidInput.on("event", f"does not match the path ({event})")
        check_template(body.subject, "subject", "document")
        check_template(body.body_html, "body_html", "document")
        if body.body_text is not None:
            check_template(body.body_text, "body_text", "document")
        item = body.model_dump(exclude={"event", "is_default", "updated_at", "updated_by"}) | {
            "updated_at": self.clock(),
            "updated_by": caller.email or caller.user_id,
        }
        self.store.put(caller.tenant_id, PREFIX + event, item)
        return DocumentAutomation.model_validate(item | {"event": event, "is_default": False})

    def preview(self, caller: Caller, event: str, document: DocumentRef | None) -> Rendered:
        """The saved (or default) wording with this document, or the event's sample one, from the
        account it would be sent from (the caller's own for sender `caller`, when saved)."""
        automation = self.get(caller.tenant_id, event)
        company = self._optional(caller, "company")
        sender = company
        if automation.sender == "caller":
            sender = self._optional(caller, "me") or company
        return render_event(
            automation, document or SAMPLE_DOCUMENTS[event], company, sender, datetime.now(UTC)
        )

    def _optional(self, caller: Caller, profile: Literal["company", "me"]) -> SettingsView | None:
        try:
            return self.settings.get(caller, profile)
        except NotFound:
            return None


@dataclass
class DocumentEvents:
    """Raising a document event: whether its email goes out, and queuing it for the worker."""

    automations: DocumentAutomationService
    attachments: AttachmentStore
    outbox: OutboxQueue
    config: MailerConfig

    def raise_event(self, caller: Caller, request: DocumentEventRequest) -> DocumentEventResult:
        """Queue the event's email, or say why not. Nothing is queued unless every check passed: an
        unknown event is a 404; an upload that is not the company's a 422 naming it, one of another
        size than declared or over the limit a 413 (as document email); a refused queue a 503."""
        request.check()
        event = known_event(request.event)
        automation = self.automations.get(caller.tenant_id, event)
        if not automation.active:
            return DocumentEventResult(queued=False, reason=f"{label(event)} is inactive")
        recipients = request.recipients
        if not recipients:
            return DocumentEventResult(queued=False, reason="no recipient: the event names no address in to")
        attached = request.attachments if automation.attach_document else []
        self._check_uploads(caller.tenant_id, attached)
        email_id = new_id()
        payload = RaisedEvent(
            document=request.document,
            to=recipients,
            attachments=attached,
            raised_by=RaisedBy.of(caller),
            raised_at=utc_now(),
        )
        message = OutboxMessage(
            tenant_id=caller.tenant_id,
            automation=DOCUMENT_EVENT,
            record_id=email_id,
            occurrence=event,
            payload=payload.model_dump(mode="json"),
        )
        if len(message.model_dump_json()) > MAX_MESSAGE_BYTES:
            raise PayloadTooLarge(
                f"The event is larger than {MAX_MESSAGE_BYTES} bytes.",
                errors=[FieldError("document", "too large")],
            )
        if self.outbox.send([message]):
            raise ServiceUnavailable(
                "The event's email could not be queued; nothing was sent. Raise it again."
            )
        return DocumentEventResult(queued=True, email_id=email_id)

    def _check_uploads(self, tenant_id: str, refs: list[AttachmentRef]) -> None:
        """Ownership and sizes, as document email checks them; the worker reads the files when it
        sends (and fails the email for good, naming the file, when one is gone or not what it claims)."""
        try:
            uploads = find_uploads(self.attachments, tenant_id, refs, resending=False)
        except NotFound as exc:  # an unknown or foreign upload is bad input of the event
            raise InvalidInput(exc.detail, errors=exc.errors) from None
        max_bytes = self.config.attachment_max_bytes
        for index, upload in enumerate(uploads):
            check_size(
                self.attachments, upload, f"attachments[{index}].upload_id", max_bytes, resending=False
            )
        check_total(uploads, max_bytes)
