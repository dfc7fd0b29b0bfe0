"""The outbox worker: one batch of queued automated email, sent once each over one connection per sender.

A message is first checked (`why_not_send`, a pure function), then claimed in the ledger, then
composed and sent. What happened is a `Handled` outcome; a transient failure raises `RetryLater`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from mailer.automations.compose import AUTOMATION_LABELS, compose, system_caller
from mailer.automations.models import Automation
from mailer.automations.notice import failure_notice
from mailer.automations.outbox import OutboxMessage
from mailer.automations.service import AutomationService
from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.dal.ledger_table import LedgerStore
from mailer.dal.secret_store import SecretMissing
from mailer.dal.sent_log_table import SentLogStore
from mailer.dal.work_orders_table import WorkOrderStore
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.message import InlineImage, OutgoingMessage
from mailer.delivery.transports.base import Delivery
from mailer.errors import MailerError, NotFound
from mailer.sent_log.models import SentLogEntry
from mailer.settings.sending import TransportPool
from mailer.settings.service import SendingProfile, SettingsService
from mailer.work_orders.models import PHOTO_CID, WorkOrder, reminder_start_date, why_no_email

MAX_RECEIVES = 5  # the queue's maxReceiveCount: the last try before the dead-letter queue
MARK_ATTEMPTS = 3  # writes of a reminded work order's confirmation status, each on a fresh read


class RetryLater(Exception):
    """A transient failure: the record fails and SQS delivers it again (a signal, not a report)."""


class Outcome(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"


@dataclass(frozen=True)
class Handled:
    outcome: Outcome
    detail: str | None = None  # why it was skipped, or the failure's category

    def __str__(self) -> str:
        return f"{self.outcome}: {self.detail}" if self.detail else str(self.outcome)


def why_not_send(
    automation: Automation, message: OutboxMessage, work_order: WorkOrder | None, parent: WorkOrder | None
) -> str | None:
    """Why a queued message must not be sent now, or None: checked again before the claim."""
    if not automation.active:
        return "automation inactive"
    if work_order is None:
        return "work order gone"
    if message.automation == "reminder" and reminder_start_date(work_order) != message.occurrence:
        return "no longer due a reminder"
    return why_no_email(work_order, parent)


def not_configured() -> Failure:
    return Failure(
        stage="connect",
        category="not_configured",
        transient=False,
        hint="The company has no email settings: an administrator must save them under /settings/company.",
    )


def template_error(automation_type: str, exc: Exception) -> Failure:
    return Failure(
        stage="render",
        category="template_error",
        transient=False,
        hint=f"The {AUTOMATION_LABELS[automation_type]} wording could not be filled in "
        f"({type(exc).__name__}); fix it under /automations/{automation_type}.",
    )


@dataclass
class WorkerDeps:
    config: MailerConfig
    settings: SettingsService
    automations: AutomationService
    work_orders: WorkOrderStore
    ledger: LedgerStore
    sent_log: SentLogStore
    attachments: AttachmentStore | None
    logger: Any


@dataclass
class OutboxWorker:
    """Lives for one batch: settings and wording are read once per batch, connections kept open."""

    deps: WorkerDeps
    pool: TransportPool = field(init=False)
    _profiles: dict[str, SendingProfile] = field(default_factory=dict)
    _automations: dict[tuple[str, str], Automation] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pool = TransportPool(self.deps.config)

    def close(self) -> None:
        self.pool.close()

    def handle(self, message: OutboxMessage, receive_count: int = 1) -> Handled:
        """What happened to the message; raises RetryLater for a transient failure."""
        automation = self._automation(message.tenant_id, message.automation)
        work_order = self.deps.work_orders.get(message.tenant_id, message.work_order_id)
        parent = self._parent(message.tenant_id, work_order)
        reason = why_not_send(automation, message, work_order, parent)
        if reason:
            return Handled(Outcome.SKIPPED, reason)
        assert work_order is not None
        if not self.deps.ledger.claim(message.ledger_key):
            return Handled(Outcome.SKIPPED, "already sent")
        return self._send_claimed(message, automation, work_order, parent, receive_count)

    def _send_claimed(
        self,
        message: OutboxMessage,
        automation: Automation,
        work_order: WorkOrder,
        parent: WorkOrder | None,
        receive_count: int,
    ) -> Handled:
        try:
            profile = self._profile(message.tenant_id)
            photo = self._photo(message, work_order)
            outgoing = compose(automation, profile.settings, work_order, parent, self.deps.config, photo)
            delivery = self.pool.send(message.tenant_id, profile, outgoing)
        except DeliveryFailed as exc:
            return self._failed(message, work_order, exc.failure, receive_count)
        except NotFound:
            return self._failed(message, work_order, not_configured(), receive_count)
        except SecretMissing as exc:
            failure = Failure(stage="auth", category="password_missing", transient=False, hint=exc.detail)
            return self._failed(message, work_order, failure, receive_count)
        except MailerError:
            # Settings, password or photo could not be read: nothing reached the server, so the
            # claim goes back for the redelivery ("never twice" is about sends).
            self.deps.ledger.release(message.ledger_key)
            raise
        except Exception as exc:  # noqa: BLE001 - wording that cannot be filled in is permanent
            return self._failed(message, work_order, template_error(message.automation, exc), receive_count)
        self._sent(message, work_order, outgoing, profile, delivery)
        return Handled(Outcome.SENT)

    def _automation(self, tenant: str, automation_type: str) -> Automation:
        key = (tenant, automation_type)
        if key not in self._automations:
            self._automations[key] = self.deps.automations.get(tenant, automation_type)
        return self._automations[key]

    def _parent(self, tenant: str, work_order: WorkOrder | None) -> WorkOrder | None:
        if work_order is None or not work_order.parent_id:
            return None
        return self.deps.work_orders.get(tenant, work_order.parent_id)

    def _profile(self, tenant: str) -> SendingProfile:
        if tenant not in self._profiles:
            self._profiles[tenant] = self.deps.settings.saved_profile(system_caller(tenant), "company")
        return self._profiles[tenant]

    def _photo(self, message: OutboxMessage, work_order: WorkOrder) -> InlineImage | None:
        upload_id = work_order.technician.photo_upload_id if work_order.technician else None
        attachments = self.deps.attachments
        if message.automation != "confirmation" or not upload_id or attachments is None:
            return None
        upload = attachments.find(message.tenant_id, upload_id)
        read = attachments.read(upload) if upload else None
        if read is None or not read[1].startswith("image/"):
            return None
        return InlineImage(PHOTO_CID, read[0], read[1], upload.filename if upload else None)

    def _sent(
        self,
        message: OutboxMessage,
        work_order: WorkOrder,
        outgoing: OutgoingMessage,
        profile: SendingProfile,
        delivery: Delivery,
    ) -> None:
        self.deps.ledger.finish(message.ledger_key, "sent")
        if message.automation == "reminder":
            self._mark_reminded(message.tenant_id, work_order)
        to = [a.addr_spec for a in outgoing.message["To"].addresses]
        self._log(
            message,
            work_order,
            SentLogEntry.attempt(
                kind="automation",
                delivery=delivery,
                failure=None,
                from_=profile.settings.from_email,
                to=to,
                bcc=[a for a in outgoing.recipients if a not in to],
                subject=str(outgoing.message["Subject"]),
                **self._entry_fields(message, work_order),
            ),
        )

    def _mark_reminded(self, tenant_id: str, work_order: WorkOrder) -> None:
        """Set `confirmation_status` on the work order as it is now: a write on the version read, so
        a status change made while the reminder was sent is kept, not overwritten with the old copy."""
        current: WorkOrder | None = work_order
        for _ in range(MARK_ATTEMPTS):
            if current is None:
                return
            marked = current.model_copy(update={"confirmation_status": "confirmation_sent"})
            if self.deps.work_orders.put(tenant_id, marked, expected_version=current.version) is not None:
                return
            current = self.deps.work_orders.get(tenant_id, work_order.id)
        self.deps.logger.warning(
            "reminder sent, work order not marked: it kept changing", extra={"work_order_id": work_order.id}
        )

    def _failed(
        self, message: OutboxMessage, work_order: WorkOrder, failure: Failure, receive_count: int
    ) -> Handled:
        if failure.transient and receive_count < MAX_RECEIVES:
            self.deps.ledger.release(message.ledger_key)
            self.deps.logger.warning(
                "automated email will be retried",
                extra={"category": failure.category, "work_order_id": work_order.id},
            )
            raise RetryLater(failure.category)
        self.deps.ledger.finish(message.ledger_key, "failed")
        label = f"{AUTOMATION_LABELS[message.automation]} for {work_order.number}"
        entry = SentLogEntry.attempt(
            kind="automation",
            delivery=None,
            failure=failure,
            from_="",
            to=[work_order.customer.email or ""],
            subject=label,
            **self._entry_fields(message, work_order),
        )
        self._log(message, work_order, entry)
        self._notify(message, work_order, failure)
        return Handled(Outcome.FAILED, failure.category)

    @staticmethod
    def _entry_fields(message: OutboxMessage, work_order: WorkOrder) -> dict[str, Any]:
        return {"profile": "company", "work_order_id": work_order.id, "automation": message.automation}

    def _log(self, message: OutboxMessage, work_order: WorkOrder, entry: SentLogEntry) -> None:
        try:
            self.deps.sent_log.put(message.tenant_id, entry)
        except MailerError:
            self.deps.logger.error("sent log write failed", extra={"work_order_id": work_order.id})

    def _notify(self, message: OutboxMessage, work_order: WorkOrder, failure: Failure) -> None:
        """Tell the company's notification address what failed, why, and how to fix it."""
        profile = self._profiles.get(message.tenant_id)
        if profile is None or not profile.settings.notify_email:
            return
        notice = failure_notice(profile.settings, AUTOMATION_LABELS[message.automation], work_order, failure)
        try:
            self.pool.send(message.tenant_id, profile, notice)
        except MailerError as exc:
            self.deps.logger.error(
                "failure notice not sent", extra={"work_order_id": work_order.id, "error": type(exc).__name__}
            )
