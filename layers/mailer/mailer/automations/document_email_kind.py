"""Queued document email as a record kind of the engine (POST /documents/email with queue: true,
and POST /documents/email/batch).

The record is the `queued` sent-log entry with the request it keeps (subject and body as rendered
when it was queued, the attachments' versions, who queued it). The worker sends it under the send
ledger's claim (tenant, document_email, entry id, send), so a redelivery never sends it twice, and
writes the same entry again as `sent` or `failed`, keeping the request so a resend works. A file
deleted or changed since it was queued fails the email for good (`attachment_expired`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from mailer.automations.kinds import Job, Recipient
from mailer.automations.outbox import OutboxMessage
from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.dal.sent_log_table import SentLogStore
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.html_text import html_to_text
from mailer.delivery.message import OutgoingMessage, Sender, build_message
from mailer.documents.attachments import load_attachments
from mailer.documents.models import SentDocumentRequest
from mailer.errors import MailerError, ServiceUnavailable
from mailer.identity import Caller
from mailer.sent_log.models import SentLogEntry
from mailer.settings.service import SendingProfile


@dataclass(frozen=True)
class QueuedEmail:
    entry: SentLogEntry
    request: SentDocumentRequest
    stored: dict[str, Any]

    @property
    def queued_by(self) -> dict[str, Any]:
        return dict(self.request.queued_by or {})


@dataclass
class DocumentEmailKind:
    config: MailerConfig
    sent_log: SentLogStore
    attachments: AttachmentStore
    noun: str = "document"

    def wording(self, tenant_id: str, message: OutboxMessage) -> Any:
        return None  # the entry carries its subject and body, rendered when it was queued

    def wording_key(self, message: OutboxMessage) -> str:
        return "document_email"

    def read(self, jobs: list[Job]) -> None:
        """Each job's queued entry and its request; None when it is gone or unreadable as one."""
        for job in jobs:
            found = self.sent_log.get_with_request(job.tenant_id, job.message.record_id)
            if found is None or found[1] is None:
                job.record = None
                continue
            entry, stored = found[0], found[1]
            try:
                job.record = QueuedEmail(entry, SentDocumentRequest.model_validate(stored), stored)
            except ValidationError:
                job.record = None

    def why_not(self, job: Job) -> str | None:
        queued: QueuedEmail | None = job.record
        if queued is None:
            return "the queued email is gone"
        if queued.entry.status != "queued":
            return "already sent"
        return None

    def compose(self, job: Job, profile: SendingProfile) -> OutgoingMessage:
        queued: QueuedEmail = job.record
        request = queued.request
        try:
            loaded = load_attachments(
                self.attachments,
                job.tenant_id,
                request.attachments,
                self.config.attachment_max_bytes,
                resending=True,
                pinned=request.attachment_versions,
            )
        except ServiceUnavailable:
            raise  # the bucket could not be read: the claim goes back for the redelivery
        except MailerError as exc:  # gone or changed since it was queued: it will not get better
            raise DeliveryFailed(attachment_expired(queued, exc)) from None
        sender = profile.settings
        html = request.body_html or ""
        job.entry["attachments"] = loaded.infos
        job.entry["profile"] = sender.profile
        return build_message(
            sender=Sender(sender.from_email, sender.from_name, sender.reply_to),
            to=queued.entry.to,
            cc=queued.entry.cc,
            bcc=queued.entry.bcc,
            subject=request.subject or queued.entry.subject,
            text=html_to_text(html),
            html=html,
            attachments=loaded.attachments,
        )

    def recipient(self, job: Job) -> Recipient:
        queued: QueuedEmail | None = job.record
        if queued is None:
            return Recipient(None, None)
        return Recipient(queued.request.document.customer_name, queued.entry.to[0])

    def to_addresses(self, job: Job) -> list[str]:
        queued: QueuedEmail | None = job.record
        if queued is None:
            return []
        return [*queued.request.to, *queued.request.cc, *queued.request.bcc]

    def number(self, job: Job) -> str:
        queued: QueuedEmail | None = job.record
        return queued.request.document.number if queued else job.message.record_id

    def entry_fields(self, job: Job) -> dict[str, Any]:
        """The queued entry itself, now sent or failed: its id, kind, document and creation time."""
        queued: QueuedEmail | None = job.record
        fields: dict[str, Any] = {"id": job.message.record_id, "kind": "document"}
        if queued is not None:
            entry = queued.entry
            fields |= {
                "document": entry.document,
                "work_order_id": entry.work_order_id,
                "created_at": entry.created_at,
                "cc": entry.cc,
                "bcc": entry.bcc,
                "attachments": entry.attachments,
                "profile": entry.profile,
            }
        return fields

    def stored_request(self, job: Job) -> dict[str, Any] | None:
        queued: QueuedEmail | None = job.record
        return queued.stored if queued is not None else None

    def sender_of(self, job: Job) -> Caller | None:
        """`company`: the company account; `auto` and `me`: the user who queued it (their own
        settings when saved, else the company's)."""
        queued: QueuedEmail | None = job.record
        if queued is None or queued.request.sender == "company":
            return None
        who = queued.queued_by
        if not who.get("user_id"):
            return None
        return Caller(
            tenant_id=job.tenant_id,
            user_id=str(who["user_id"]),
            email=who.get("email"),
            is_admin=bool(who.get("is_admin")),
        )

    def fix_at(self, message: OutboxMessage) -> str:
        return "/document-templates"


def attachment_expired(queued: QueuedEmail, exc: MailerError) -> Failure:
    return Failure(
        stage="attachments",
        category="attachment_expired",
        transient=False,
        hint=f"An attachment of {queued.request.document.number} was deleted or changed after the email "
        f"was queued ({exc.detail}). Upload the file again and send the email again.",
    )
