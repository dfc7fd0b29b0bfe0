"""Send a document with its attachments from the user's or the company's account, log it, resend it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore, StoredUpload
from mailer.dal.sent_log_table import SentLogStore
from mailer.delivery.classify import every_visible_recipient_refused
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.html_text import html_to_text
from mailer.delivery.message import Attachment, Sender, build_message
from mailer.documents.models import DocumentEmailRequest, DocumentPreviewRequest, document_context
from mailer.documents.wording import DocumentTemplateService
from mailer.errors import Conflict, FieldError, Gone, InvalidInput, MailerError, NotFound, PayloadTooLarge
from mailer.identity import Caller
from mailer.ids import new_id, utc_now
from mailer.sent_log.models import AttachmentInfo, SentLogEntry
from mailer.settings.models import HeaderText, SettingsView
from mailer.settings.sending import deliver
from mailer.settings.service import SendingProfile, SettingsService
from mailer.templating.engine import render, render_subject

# Content types an upload may declare, with the bytes a real file of that type starts with.
ALLOWED_UPLOADS: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "text/csv": (),
    "text/plain": (),
}
UploadContentType = Literal["application/pdf", "image/png", "image/jpeg", "text/csv", "text/plain"]
_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    filename: Annotated[HeaderText, Field(min_length=1, max_length=200)]
    content_type: UploadContentType
    size: Annotated[int, Field(ge=0)]


class UploadTicket(BaseModel):
    upload_id: str
    url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    expires_at: str
    max_size: int


class Rendered(BaseModel):
    subject: str
    html: str
    text: str


@dataclass(frozen=True)
class _Prepared:
    profile: SendingProfile
    company: SettingsView | None
    attachments: list[Attachment]
    infos: list[AttachmentInfo]


class DocumentEmailService:
    def __init__(
        self,
        settings: SettingsService,
        templates: DocumentTemplateService,
        attachments: AttachmentStore,
        sent_log: SentLogStore,
        config: MailerConfig,
        logger: Any,
    ) -> None:
        self.settings = settings
        self.templates = templates
        self.attachments = attachments
        self.sent_log = sent_log
        self.config = config
        self.logger = logger

    # uploads
    def create_upload(self, caller: Caller, request: UploadRequest) -> UploadTicket:
        if _UNSAFE_FILENAME.search(request.filename) or request.filename.startswith("."):
            raise InvalidInput.on("filename", "must be a plain file name (no path, no control characters)")
        if request.size == 0:
            raise InvalidInput.on("size", "the file is empty")
        if request.size > self.config.attachment_max_bytes:
            raise PayloadTooLarge(
                f"The file is {request.size} bytes; the limit is {self.config.attachment_max_bytes} bytes.",
                errors=[_field("size", "over the attachment limit")],
            )
        upload_id = new_id()
        presigned = self.attachments.presign_upload(
            caller.tenant_id, upload_id, request.filename, request.content_type
        )
        return UploadTicket(
            upload_id=upload_id,
            url=presigned.url,
            headers=presigned.headers,
            expires_at=presigned.expires_at,
            max_size=self.config.attachment_max_bytes,
        )

    # sender and content
    def _sender(self, caller: Caller, choice: str) -> tuple[SendingProfile, SettingsView | None]:
        company = self._optional(caller, "company")
        if choice in ("auto", "me"):
            mine = self._optional(caller, "me")
            if mine is not None:
                return self.settings.saved_profile(caller, "me"), company
            if choice == "me":
                raise Conflict(
                    "You have no email settings of your own: save them under /settings/me, "
                    "or send from the company account."
                )
        if company is None:
            raise Conflict(
                "The company has no email settings yet: an administrator must save them under "
                "/settings/company."
            )
        return self.settings.saved_profile(caller, "company"), company

    def _optional(self, caller: Caller, profile: Literal["company", "me"]) -> SettingsView | None:
        try:
            return self.settings.get(caller, profile)
        except NotFound:
            return None

    def render(self, caller: Caller, request: DocumentPreviewRequest | DocumentEmailRequest) -> Rendered:
        profile, company = self._sender(caller, request.sender)
        context = document_context(request.document, company, profile.settings, datetime.now(UTC))
        template = self.templates.get(caller.tenant_id, request.document.type)
        subject = getattr(request, "subject", None) or render_subject(template.subject, context)
        html = getattr(request, "body_html", None) or render(template.body_html, context, html=True)
        return Rendered(subject=subject, html=html, text=html_to_text(html))

    # attachments
    def _load_attachments(
        self, caller: Caller, request: DocumentEmailRequest, *, resending: bool = False
    ) -> tuple[list[Attachment], list[Any]]:
        found: list[tuple[int, StoredUpload]] = []
        for index, ref in enumerate(request.attachments):
            upload = self.attachments.find(caller.tenant_id, ref.upload_id)
            if upload is None and resending:
                # The sent log proves the file was there: it has expired (AttachmentRetentionDays).
                raise Gone(
                    "An attachment of this email is no longer kept; upload it again and send a new email.",
                    errors=[_field(f"attachments[{index}].upload_id", "expired")],
                )
            if upload is None:
                raise NotFound(
                    f"No upload {ref.upload_id} for this company.",
                    errors=[_field(f"attachments[{index}].upload_id", "unknown upload")],
                )
            found.append((index, upload))
        total = sum(upload.size for _, upload in found)
        if total > self.config.attachment_max_bytes:
            raise PayloadTooLarge(
                f"The attachments total {total} bytes; the limit is {self.config.attachment_max_bytes}.",
                errors=[_field("attachments", "over the attachment limit")],
            )
        attachments, infos = [], []
        for index, upload in found:
            where = f"attachments[{index}].upload_id"
            read = self.attachments.read(upload)
            if read is None:
                raise Gone(
                    f"The file {upload.filename} is no longer kept; upload it again.",
                    errors=[_field(where, "expired")],
                )
            content, content_type = read
            if not content:
                raise InvalidInput.on(where, f"{upload.filename} is empty")
            if content_type not in ALLOWED_UPLOADS:
                raise InvalidInput.on(
                    where, f"{upload.filename} has a type that cannot be attached ({content_type})"
                )
            signatures = ALLOWED_UPLOADS[content_type]
            if signatures and not content.startswith(signatures):
                raise InvalidInput.on(where, f"{upload.filename} is not a real {content_type} file")
            attachments.append(Attachment(upload.filename, content, content_type))
            infos.append(AttachmentInfo(filename=upload.filename, size=len(content)))
        return attachments, infos

    # send, resend, read
    def send(
        self, caller: Caller, request: DocumentEmailRequest, *, resent_from: str | None = None
    ) -> SentLogEntry:
        request.check()
        profile, company = self._sender(caller, request.sender)
        attachments, infos = self._load_attachments(caller, request, resending=resent_from is not None)
        rendered = self.render(caller, request)
        archive = [b for b in (company.bcc if company else None, profile.settings.bcc) if b]
        bcc = list(dict.fromkeys([*request.bcc, *archive]))
        message = build_message(
            sender=Sender(profile.settings.from_email, profile.settings.from_name, profile.settings.reply_to),
            to=request.to,
            cc=request.cc,
            bcc=bcc,
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            attachments=attachments,
        )
        created_at = utc_now()
        failure: Failure | None = None
        delivery = None
        try:
            delivery = deliver(profile, message, self.config)
            failure = every_visible_recipient_refused(delivery.refused, [*request.to, *request.cc])
        except DeliveryFailed as exc:
            failure = exc.failure
        entry = SentLogEntry(
            id=new_id(),
            kind="document",
            status="failed" if failure else "sent",
            from_=profile.settings.from_email,
            to=request.to,
            cc=request.cc,
            bcc=bcc,
            subject=rendered.subject,
            profile=profile.settings.profile,
            document=request.document.model_dump(mode="json"),
            work_order_id=request.work_order_id,
            message_id=delivery.message_id if delivery and not failure else None,
            attachments=infos,
            refused=delivery.refused if delivery else {},
            error=failure.as_dict() if failure else None,
            created_at=created_at,
            sent_at=None if failure else utc_now(),
            resent_from=resent_from,
        )
        stored = request.model_dump(mode="json") | {"subject": rendered.subject, "body_html": rendered.html}
        try:
            self.sent_log.put(caller.tenant_id, entry, request=stored)
        except MailerError:
            self.logger.error("sent log write failed", extra={"email_id": entry.id, "status": entry.status})
        if failure:
            self.logger.info(
                "document email failed", extra={"category": failure.category, "email_id": entry.id}
            )
            raise DeliveryFailed(failure, email_id=entry.id)
        return entry

    def resend(self, caller: Caller, email_id: str) -> SentLogEntry:
        found = self.sent_log.get_with_request(caller.tenant_id, email_id)
        if found is None:
            raise NotFound(f"No email {email_id} in the sent log.")
        entry, stored = found
        if entry.kind != "document" or stored is None:
            raise Conflict(
                "Only document emails can be resent; tests and automated emails are sent by their own action."
            )
        return self.send(caller, DocumentEmailRequest.model_validate(stored), resent_from=entry.id)


def _field(name: str, message: str) -> FieldError:
    return FieldError(name, message)
