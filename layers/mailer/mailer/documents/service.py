"""Send a document with its attachments from the user's or the company's account, log it, resend it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from mailer.automations.outbox import DOCUMENT_EMAIL, OutboxMessage, SentLogMessage
from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.dal.outbox_queue import OutboxQueue
from mailer.dal.sent_log_table import SentLogStore
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.html_text import html_to_text
from mailer.delivery.message import Sender, build_message
from mailer.documents.attachments import check_attachments, load_attachments
from mailer.documents.models import (
    AttachmentVersion,
    DocumentEmailRequest,
    DocumentPreviewRequest,
    Rendered,
    SentDocumentRequest,
    document_context,
)
from mailer.documents.wording import DocumentTemplateService
from mailer.errors import Conflict, MailerError, NotFound, ServiceUnavailable
from mailer.identity import Caller
from mailer.ids import new_id, utc_now
from mailer.sent_log.models import SentLogEntry
from mailer.settings.models import SettingsView
from mailer.settings.sending import send_now
from mailer.settings.service import SendingProfile, SettingsService
from mailer.suppression.service import Suppressions
from mailer.templating.engine import render, render_subject
from mailer.tracking.opens import OpenPixel, tracked


def queue_unavailable() -> Failure:
    return Failure(
        stage="queue",
        category="queue_unavailable",
        transient=True,
        hint="The email queue could not take it; nothing was sent. Send it again.",
    )


SENT_LOG_TRIES = 3  # writes of a sent email's entry before it goes to the outbox queue
SENT_LOG_PAUSE_SECONDS = 0.1  # before the second try, doubled before the third
SENT_LOG_SECONDS = 1.0  # no pause starts past this, from the first try: the caller is waiting


class DocumentEmailService:
    def __init__(
        self,
        settings: SettingsService,
        templates: DocumentTemplateService,
        attachments: AttachmentStore,
        sent_log: SentLogStore,
        config: MailerConfig,
        logger: Any,
        outbox: OutboxQueue | None = None,
        suppressions: Suppressions | None = None,
        pixel: OpenPixel | None = None,
    ) -> None:
        self.suppressions = suppressions
        self.pixel = pixel  # the open-tracking pixel, for companies with track_opens on
        self.settings = settings
        self.templates = templates
        self.attachments = attachments
        self.sent_log = sent_log
        self.config = config
        self.logger = logger
        self.outbox = outbox  # where an entry the sent log refuses waits for the worker

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

    # send, resend, read
    def send(
        self,
        caller: Caller,
        request: DocumentEmailRequest,
        *,
        resent_from: str | None = None,
        pinned: Sequence[AttachmentVersion] = (),
    ) -> SentLogEntry:
        """Send and log the attempt; a resend (`resent_from`) attaches the `pinned` versions of its files."""
        request.check()
        if self.suppressions is not None:  # a 422 naming the field, before anything is read or sent
            fields = [("to", request.to), ("cc", request.cc), ("bcc", request.bcc)]
            self.suppressions.check(caller.tenant_id, fields)
        profile, company = self._sender(caller, request.sender)
        loaded = load_attachments(
            self.attachments,
            caller.tenant_id,
            request.attachments,
            self.config.attachment_max_bytes,
            resending=resent_from is not None,
            pinned=pinned,
        )
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
            attachments=loaded.attachments,
        )
        tracks_opens = company is not None and company.track_opens
        entry_id, message = tracked(self.pixel, message, caller.tenant_id, tracks_opens=tracks_opens)
        created_at = utc_now()
        delivery, failure = send_now(
            profile, message, self.config, self.settings.budgets, [*request.to, *request.cc]
        )
        entry = SentLogEntry.attempt(
            id=entry_id,
            kind="document",
            delivery=delivery,
            failure=failure,
            created_at=created_at,
            from_=profile.settings.from_email,
            to=request.to,
            cc=request.cc,
            bcc=bcc,
            subject=rendered.subject,
            profile=profile.settings.profile,
            document=request.document.model_dump(mode="json"),
            work_order_id=request.work_order_id,
            attachments=loaded.infos,
            resent_from=resent_from,
        )
        stored = request.model_dump(mode="json") | {
            "subject": rendered.subject,
            "body_html": rendered.html,
            "attachment_versions": [version.model_dump(mode="json") for version in loaded.versions],
        }
        self.keep_entry(caller.tenant_id, entry, stored)
        if failure:
            self.logger.info(
                "document email failed", extra={"category": failure.category, "email_id": entry.id}
            )
            raise DeliveryFailed(failure, email_id=entry.id)
        return entry

    # the email queue
    def queue(self, caller: Caller, request: DocumentEmailRequest) -> SentLogEntry:
        """Check the email as a send would (recipients, suppression, sender, attachments, wording),
        keep it as a `queued` entry with what the worker needs, and queue it; the worker sends it
        under the send ledger's claim, so it goes once however often it is delivered."""
        request.check()
        if self.suppressions is not None:
            fields = [("to", request.to), ("cc", request.cc), ("bcc", request.bcc)]
            self.suppressions.check(caller.tenant_id, fields)
        profile, company = self._sender(caller, request.sender)
        infos, versions = check_attachments(
            self.attachments, caller.tenant_id, request.attachments, self.config.attachment_max_bytes
        )
        rendered = self.render(caller, request)
        archive = [b for b in (company.bcc if company else None, profile.settings.bcc) if b]
        entry = SentLogEntry.model_validate(
            {
                "id": new_id(),
                "kind": "document",
                "status": "queued",
                "from": profile.settings.from_email,
                "to": request.to,
                "cc": request.cc,
                "bcc": list(dict.fromkeys([*request.bcc, *archive])),
                "subject": rendered.subject,
                "profile": profile.settings.profile,
                "document": request.document.model_dump(mode="json"),
                "work_order_id": request.work_order_id,
                "attachments": [i.model_dump() for i in infos],
                "created_at": utc_now(),
            }
        )
        stored = request.model_dump(mode="json") | {
            "subject": rendered.subject,
            "body_html": rendered.html,
            "attachment_versions": [version.model_dump(mode="json") for version in versions],
            "queued_by": {"user_id": caller.user_id, "email": caller.email, "is_admin": caller.is_admin},
        }
        self.sent_log.put(caller.tenant_id, entry, request=stored)
        message = OutboxMessage(
            tenant_id=caller.tenant_id, automation=DOCUMENT_EMAIL, record_id=entry.id, occurrence="send"
        )
        if self.outbox is None or self.outbox.send([message]):
            failed = entry.model_copy(update={"status": "failed", "error": queue_unavailable().as_dict()})
            self.sent_log.put(caller.tenant_id, failed, request=stored)
            raise ServiceUnavailable("The email could not be queued; nothing will be sent. Try again.")
        return entry

    def keep_entry(self, tenant_id: str, entry: SentLogEntry, stored: dict[str, Any]) -> None:
        """Keep the entry, with the request its resend needs, so that the id the caller gets is found.
        The sent log is tried SENT_LOG_TRIES times with short pauses, within SENT_LOG_SECONDS (the
        caller is waiting); then the outbox queue takes it, as a `sent_log` message the worker writes
        with the same id; only when the queue refuses too is it lost, and logged."""
        extra = {"email_id": entry.id, "status": entry.status}
        give_up = time.monotonic() + SENT_LOG_SECONDS
        for attempt in range(SENT_LOG_TRIES):
            try:
                self.sent_log.put(tenant_id, entry, request=stored)
                return
            except MailerError:
                pause = SENT_LOG_PAUSE_SECONDS * 2**attempt
                if attempt + 1 == SENT_LOG_TRIES or time.monotonic() + pause > give_up:
                    break
                time.sleep(pause)
        queued = SentLogMessage(tenant_id=tenant_id, entry=entry, request=stored)
        if self.outbox is not None and not self.outbox.send([queued]):
            self.logger.warning("sent log write failed: queued to be written later", extra=extra)
            return
        self.logger.error("sent log write failed", extra=extra)

    def resend(self, caller: Caller, email_id: str) -> SentLogEntry:
        found = self.sent_log.get_with_request(caller.tenant_id, email_id)
        if found is None:
            raise NotFound(f"No email {email_id} in the sent log.")
        entry, stored = found
        if entry.kind != "document" or stored is None:
            raise Conflict(
                "Only document emails can be resent; tests and automated emails are sent by their own action."
            )
        sent = SentDocumentRequest.model_validate(stored)  # an entry from before versions were kept has none
        return self.send(caller, sent, resent_from=entry.id, pinned=sent.attachment_versions)
