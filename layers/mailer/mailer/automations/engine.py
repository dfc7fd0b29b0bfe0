"""Automated email: the noon reminder run, status-change emails, previews, and the outbox worker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from mailer.automations.models import ACTIVE_INDEX_PK, Automation, AutomationService
from mailer.automations.outbox import OutboxMessage
from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.dal.ledger_table import LedgerStore
from mailer.dal.outbox_queue import OutboxQueue
from mailer.dal.secret_store import SecretMissing
from mailer.dal.sent_log_table import SentLogStore
from mailer.dal.work_orders_table import WorkOrderStore
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.html_text import html_to_text
from mailer.delivery.message import InlineImage, OutgoingMessage, Sender, build_message
from mailer.delivery.transports.base import TransportBase
from mailer.errors import MailerError, NotFound, ServiceUnavailable
from mailer.identity import Caller
from mailer.ids import new_id, utc_now
from mailer.sent_log.models import SentLogEntry
from mailer.settings.models import SettingsView
from mailer.settings.sending import transport_for
from mailer.settings.service import SendingProfile, SettingsService
from mailer.templating.engine import render, render_subject
from mailer.templating.fields import company_values, long_date, sample_context
from mailer.work_orders.models import (
    PHOTO_CID,
    PHOTO_HTML,
    StatusChange,
    WorkOrder,
    reminder_start_date,
    why_no_email,
    work_order_context,
)

STATUS_AUTOMATION = {"en_route": "confirmation", "completed": "thank_you"}
AUTOMATION_LABELS = {
    "reminder": "reminder",
    "confirmation": "on-the-way confirmation",
    "thank_you": "thank-you",
}
MAX_RECEIVES = 5  # the queue's maxReceiveCount: the last try before the dead-letter queue


class RetryLater(Exception):
    """A transient failure: the record fails and SQS delivers it again (a signal, not a report)."""


def system_caller(tenant_id: str) -> Caller:
    return Caller(tenant_id=tenant_id, user_id="automation", email=None, is_admin=True)


@dataclass
class Rendered:
    subject: str
    html: str
    text: str


@dataclass
class AutomatedEmail:
    """The services automated email needs, wired by `Services`."""

    config: MailerConfig
    settings: SettingsService
    automations: AutomationService
    work_orders: WorkOrderStore
    ledger: LedgerStore
    outbox: OutboxQueue
    sent_log: SentLogStore
    attachments: AttachmentStore | None
    logger: Any

    # time and company
    def company(self, tenant_id: str) -> SettingsView | None:
        try:
            return self.settings.get(system_caller(tenant_id), "company")
        except NotFound:
            return None

    def zone(self, company: SettingsView | None) -> ZoneInfo:
        return ZoneInfo((company.timezone if company else None) or self.config.default_timezone)

    # reminder run
    def plan_reminders(self, tenant_id: str, run_date: date | None = None) -> int:
        """Queue tomorrow's (days_before) reminders; those already sent or failed are left out."""
        automation = self.automations.get(tenant_id, "reminder")
        if not automation.active:
            return 0
        company = self.company(tenant_id)
        today = run_date or datetime.now(self.zone(company)).date()
        start_date = (today + timedelta(days=automation.days_before or 0)).isoformat()
        queued = 0
        page: list[OutboxMessage] = []
        for work_order in self.work_orders.due(tenant_id, start_date):
            if reminder_start_date(work_order) == start_date:
                page.append(
                    OutboxMessage(
                        tenant_id=tenant_id,
                        automation="reminder",
                        work_order_id=work_order.id,
                        occurrence=start_date,
                    )
                )
            if len(page) == 100:
                queued += self._queue_new(page)
                page = []
        queued += self._queue_new(page)
        self.logger.info(
            "reminders planned", extra={"tenant_id": tenant_id, "start_date": start_date, "queued": queued}
        )
        return queued

    def plan_all_tenants(self) -> dict[str, int]:
        """The scheduled run: every tenant whose reminder is active, found through a sparse index."""
        tenants = self.settings.store.tenants_in_index(ACTIVE_INDEX_PK)
        queued = 0
        for tenant_id in tenants:
            try:
                queued += self.plan_reminders(tenant_id)
            except MailerError:
                # One tenant's trouble must not cost every other tenant its reminders.
                self.logger.exception("reminder run failed for a tenant", extra={"tenant_id": tenant_id})
        return {"tenants": len(tenants), "queued": queued}

    def _queue_new(self, messages: list[OutboxMessage]) -> int:
        if not messages:
            return 0
        done = self.ledger.existing(m.ledger_key for m in messages)
        fresh = [m for m in messages if m.ledger_key not in done]
        failed = self.outbox.send(fresh)
        if failed:
            # The ledger does not hold them, so the next run queues them: say so, do not look idle.
            self.logger.error("reminders not queued", extra={"count": len(failed)})
            raise ServiceUnavailable(
                f"{len(failed)} reminders could not be queued ({len(fresh) - len(failed)} were); run again."
            )
        return len(fresh) - len(failed)

    # status changes
    def change_status(
        self, caller: Caller, work_order_id: str, change: StatusChange
    ) -> tuple[WorkOrder, dict[str, Any]]:
        work_order = self.work_orders.get(caller.tenant_id, work_order_id)
        if work_order is None:
            raise NotFound(f"No work order {work_order_id}.")
        previous = work_order
        work_order = work_order.model_copy(update={"status": change.status, "updated_at": utc_now()})
        self.work_orders.put(caller.tenant_id, work_order)
        try:
            email = self._status_email(caller.tenant_id, work_order, change, previous.status)
        except ServiceUnavailable:
            # The caller is told to retry; the retry must find the old status, or it queues nothing.
            self.work_orders.put(caller.tenant_id, previous)
            raise
        return work_order, email

    def _status_email(
        self, tenant_id: str, work_order: WorkOrder, change: StatusChange, previous: str
    ) -> dict[str, Any]:
        automation_type = STATUS_AUTOMATION.get(change.status)
        if automation_type is None:
            return {"queued": False, "reason": f"no automated email is sent for status {change.status}"}
        if previous == change.status:
            return {"queued": False, "reason": f"the work order was already {change.status}"}
        if not change.notify:
            return {"queued": False, "reason": "notify was false: the technician chose not to send it"}
        if not self.automations.get(tenant_id, automation_type).active:
            return {"queued": False, "reason": f"the {AUTOMATION_LABELS[automation_type]} email is inactive"}
        reason = why_no_email(work_order, self._parent(tenant_id, work_order))
        if reason:
            return {"queued": False, "reason": reason}
        message = OutboxMessage(
            tenant_id=tenant_id, automation=automation_type, work_order_id=work_order.id, occurrence=new_id()
        )
        self.outbox.send_one(message)
        return {"queued": True, "automation": automation_type}

    def _parent(self, tenant_id: str, work_order: WorkOrder) -> WorkOrder | None:
        return self.work_orders.get(tenant_id, work_order.parent_id) if work_order.parent_id else None

    # rendering
    def render(self, tenant_id: str, automation_type: str, work_order: WorkOrder | None) -> Rendered:
        """A preview: the saved (or default) wording with this work order, or sample data."""
        return render_automation(
            self.automations.get(tenant_id, automation_type), self.company(tenant_id), work_order, self.config
        )


def render_automation(
    automation: Automation,
    company: SettingsView | None,
    work_order: WorkOrder | None,
    config: MailerConfig,
    *,
    photo: bool = False,
) -> Rendered:
    """Fill an automation's wording; fields a work order lacks keep their sample values in previews."""
    zone = ZoneInfo((company.timezone if company else None) or config.default_timezone)
    context = sample_context("automation")
    if work_order is not None:
        context |= work_order_context(work_order, zone, photo=photo)
    if company is not None:
        context["company"] = company_values(company)
    context["today"] = long_date(datetime.now(zone).date())
    html = render(automation.body_html, context, html=True)
    if photo and PHOTO_CID not in html:
        html += f"<p>{PHOTO_HTML}</p>"
    text = render(automation.body_text, context, html=False) if automation.body_text else html_to_text(html)
    return Rendered(subject=render_subject(automation.subject, context), html=html, text=text)


@dataclass
class OutboxWorker:
    """Sends one batch of outbox messages: one SMTP connection per sender for the whole batch."""

    mail: AutomatedEmail
    _transports: dict[str, TransportBase] = field(default_factory=dict)
    _profiles: dict[str, SendingProfile] = field(default_factory=dict)
    _automations: dict[tuple[str, str], Automation] = field(default_factory=dict)

    def _automation(self, tenant: str, automation_type: str) -> Automation:
        """Read once per batch: a worker lives for one batch, so a change applies to the next one."""
        key = (tenant, automation_type)
        if key not in self._automations:
            self._automations[key] = self.mail.automations.get(tenant, automation_type)
        return self._automations[key]

    def close(self) -> None:
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()

    def handle(self, message: OutboxMessage, receive_count: int = 1) -> str:
        """Returns what happened (sent, skipped: why, failed: category); raises RetryLater."""
        mail = self.mail
        tenant = message.tenant_id
        automation = self._automation(tenant, message.automation)
        if not automation.active:
            return "skipped: automation inactive"
        work_order = mail.work_orders.get(tenant, message.work_order_id)
        if work_order is None:
            return "skipped: work order gone"
        if message.automation == "reminder" and reminder_start_date(work_order) != message.occurrence:
            return "skipped: no longer due a reminder"
        parent = mail._parent(tenant, work_order)
        reason = why_no_email(work_order, parent)
        if reason:
            return f"skipped: {reason}"
        if not mail.ledger.claim(message.ledger_key):
            return "skipped: already sent"
        try:
            profile = self._profile(tenant)
            outgoing = self._build(message, work_order, parent, profile)
            delivery = self._send(tenant, profile, outgoing)
        except DeliveryFailed as exc:
            return self._failed(message, work_order, exc.failure, receive_count)
        except NotFound:
            failure = Failure(
                stage="connect",
                category="not_configured",
                transient=False,
                hint="The company has no email settings: an administrator must save them "
                "under /settings/company.",
            )
            return self._failed(message, work_order, failure, receive_count)
        except SecretMissing as exc:
            failure = Failure(stage="auth", category="password_missing", transient=False, hint=exc.detail)
            return self._failed(message, work_order, failure, receive_count)
        except MailerError:
            # Settings, password or photo could not be read: nothing reached the server, so the
            # claim goes back for the redelivery ("never twice" is about sends).
            mail.ledger.release(message.ledger_key)
            raise
        except Exception as exc:  # noqa: BLE001 - wording that cannot be filled in is permanent
            failure = Failure(
                stage="render",
                category="template_error",
                transient=False,
                hint=f"The {AUTOMATION_LABELS[message.automation]} wording could not be filled in "
                f"({type(exc).__name__}); fix it under /automations/{message.automation}.",
            )
            return self._failed(message, work_order, failure, receive_count)
        mail.ledger.finish(message.ledger_key, "sent")
        if message.automation == "reminder":
            mail.work_orders.put(
                tenant, work_order.model_copy(update={"confirmation_status": "confirmation_sent"})
            )
        self._log(message, work_order, outgoing, profile, status="sent", message_id=delivery.message_id)
        return "sent"

    def _profile(self, tenant: str) -> SendingProfile:
        if tenant not in self._profiles:
            self._profiles[tenant] = self.mail.settings.saved_profile(system_caller(tenant), "company")
        return self._profiles[tenant]

    def _build(
        self, message: OutboxMessage, work_order: WorkOrder, parent: WorkOrder | None, profile: SendingProfile
    ) -> OutgoingMessage:
        photo = self._photo(message, work_order)
        automation = self._automation(message.tenant_id, message.automation)
        settings = profile.settings
        rendered = render_automation(
            automation, settings, work_order, self.mail.config, photo=photo is not None
        )
        contact = (parent or work_order).customer
        assert contact.email
        return build_message(
            sender=Sender(settings.from_email, settings.from_name, settings.reply_to),
            to=[contact.email],
            bcc=[settings.bcc] if settings.bcc else [],
            subject=rendered.subject,
            text=rendered.text,
            html=rendered.html,
            inline_images=[photo] if photo else [],
            automated=True,
        )

    def _photo(self, message: OutboxMessage, work_order: WorkOrder) -> InlineImage | None:
        upload_id = work_order.technician.photo_upload_id if work_order.technician else None
        if message.automation != "confirmation" or not upload_id or self.mail.attachments is None:
            return None
        upload = self.mail.attachments.find(message.tenant_id, upload_id)
        read = self.mail.attachments.read(upload) if upload else None
        if read is None or not read[1].startswith("image/"):
            return None
        return InlineImage(PHOTO_CID, read[0], read[1], upload.filename if upload else None)

    def _send(self, tenant: str, profile: SendingProfile, outgoing: OutgoingMessage) -> Any:
        transport = self._transports.get(tenant)
        if transport is None:
            transport = self._open(profile)
            self._transports[tenant] = transport
        try:
            return transport.send(outgoing)
        except DeliveryFailed as exc:
            if exc.failure.category in ("connection_lost", "timeout"):
                self._transports.pop(tenant, None)
            raise

    def _open(self, profile: SendingProfile) -> TransportBase:
        password = profile.password()
        transport = transport_for(profile.settings, password, self.mail.config)
        try:
            transport.open()
        except DeliveryFailed as exc:
            fresh = profile.password(force_fetch=True) if profile.password_cached else password
            if exc.failure.category != "auth_failed" or fresh == password:
                raise
            transport = transport_for(profile.settings, fresh, self.mail.config)
            transport.open()
        return transport

    def _failed(
        self, message: OutboxMessage, work_order: WorkOrder, failure: Failure, receive_count: int
    ) -> str:
        mail = self.mail
        if failure.transient and receive_count < MAX_RECEIVES:
            mail.ledger.release(message.ledger_key)
            mail.logger.warning(
                "automated email will be retried",
                extra={"category": failure.category, "work_order_id": work_order.id},
            )
            raise RetryLater(failure.category)
        mail.ledger.finish(message.ledger_key, "failed")
        self._log(message, work_order, None, None, status="failed", failure=failure)
        self._notify(message, work_order, failure)
        return f"failed: {failure.category}"

    def _log(
        self,
        message: OutboxMessage,
        work_order: WorkOrder,
        outgoing: OutgoingMessage | None,
        profile: SendingProfile | None,
        *,
        status: str,
        message_id: str | None = None,
        failure: Failure | None = None,
    ) -> None:
        to = (
            [a.addr_spec for a in outgoing.message["To"].addresses]
            if outgoing
            else [work_order.customer.email or ""]
        )
        label = f"{AUTOMATION_LABELS[message.automation]} for {work_order.number}"
        entry = SentLogEntry(
            id=new_id(),
            kind="automation",
            status=status,  # type: ignore[arg-type]
            from_=profile.settings.from_email if profile else "",
            to=to,
            bcc=[a for a in outgoing.recipients if a not in to] if outgoing else [],
            subject=str(outgoing.message["Subject"]) if outgoing else label,
            profile="company",
            work_order_id=work_order.id,
            automation=message.automation,
            message_id=message_id,
            error=failure.as_dict() if failure else None,
            created_at=utc_now(),
            sent_at=utc_now() if status == "sent" else None,
        )
        try:
            self.mail.sent_log.put(message.tenant_id, entry)
        except MailerError:
            self.mail.logger.error("sent log write failed", extra={"work_order_id": work_order.id})

    def _notify(self, message: OutboxMessage, work_order: WorkOrder, failure: Failure) -> None:
        """Tell the company's notification address what failed, why, and how to fix it."""
        profile = self._profiles.get(message.tenant_id)
        company = profile.settings if profile else None
        if company is None or not company.notify_email:
            return
        label = AUTOMATION_LABELS[message.automation]
        text = (
            f"The automated {label} email for work order {work_order.number} "
            f"({work_order.customer.name}, {work_order.customer.email}) was not sent.\n\n"
            f"Why: {failure.category.replace('_', ' ')}"
            + (
                f" - the server said: {failure.smtp_code or ''} {failure.server_message}"
                if failure.server_message
                else ""
            )
            + f"\n\nHow to fix it: {failure.hint}\n\n"
            "After fixing the settings, use Test account settings to check them.\n"
        )
        notice = build_message(
            sender=Sender(company.from_email, company.from_name, None),
            to=[company.notify_email],
            subject=f"Not sent: {label} email for work order {work_order.number}",
            text=text,
            automated=True,
        )
        try:
            with transport_for(
                company, self._profile(message.tenant_id).password(), self.mail.config
            ) as transport:
                transport.send(notice)
        except (DeliveryFailed, MailerError) as exc:
            self.mail.logger.error(
                "failure notice not sent", extra={"work_order_id": work_order.id, "error": type(exc).__name__}
            )
