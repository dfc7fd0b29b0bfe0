"""A work-order reminder sent now, on request (POST /work-orders/{id}/remind): the company's
`reminder` wording composed exactly as the scheduled run composes it, from the company account,
logged in the sent log as the run's reminders are (`automation` `reminder`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailer.automations.compose import compose
from mailer.automations.service import AutomationService
from mailer.config import MailerConfig
from mailer.dal.work_orders_table import WorkOrderStore
from mailer.delivery.failures import DeliveryFailed
from mailer.errors import Conflict, InvalidInput, MailerError, NotFound
from mailer.identity import Caller
from mailer.ids import utc_now
from mailer.sent_log.models import SentLogEntry
from mailer.settings.sending import send_now
from mailer.settings.service import SendingProfile, SettingsService
from mailer.suppression.service import Suppressions
from mailer.tracking.opens import OpenPixel, tracked
from mailer.work_orders.models import STATUS_LABELS, WorkOrder, valid_address

REMINDER = "reminder"
MARK_ATTEMPTS = 3  # writes of the work order's confirmation status, each on a fresh read
LogEntry = Callable[[str, SentLogEntry, dict[str, Any]], None]  # (tenant, entry, what it keeps)


@dataclass
class WorkOrderReminders:
    settings: SettingsService
    automations: AutomationService
    work_orders: WorkOrderStore
    config: MailerConfig
    log: LogEntry  # the sent log's write, retried, then queued (DocumentEmailService.keep_entry)
    logger: Any = None
    suppressions: Suppressions | None = None  # the company's list: a suppressed customer is a 422
    pixel: OpenPixel | None = None  # open tracking, for companies with track_opens on

    def remind(self, caller: Caller, work_order_id: str) -> SentLogEntry:
        """Send the reminder of the work order now, log it and mark the work order
        `confirmation_sent`; any user of the company may.

        A person asked for it, so the `reminder` automation's wording is used even while the
        automation is inactive, and, as the invoice reminder on request, the customer's automated
        contact method (`text`, `none`) is not looked at: it needs a `scheduled` work order (409
        otherwise) and a valid address of the customer, the parent's customer for a day of a
        multi-day work order (422 naming `customer.email`). The message is the scheduled one,
        composed by `compose`.

        It does not write the send ledger, so it neither uses up nor blocks the scheduled reminder
        of the work order; but once marked `confirmation_sent` the work order leaves the reminder
        index, so the scheduled run finds nothing left to send it. A work order the customer has
        already `confirmed` keeps that status.
        """
        work_order = self.work_orders.get(caller.tenant_id, work_order_id)
        if work_order is None:
            raise NotFound(f"No work order {work_order_id}.")
        if work_order.status != "scheduled":
            label = STATUS_LABELS[work_order.status].lower()
            raise Conflict(
                f"Work order {work_order.number} is {label}: only a scheduled work order gets a reminder."
            )
        parent = self._parent(caller, work_order)
        address = (parent or work_order).customer.email
        if address is None or not valid_address(address):
            raise InvalidInput.on("customer.email", "the work order's customer has no valid email address")
        if self.suppressions is not None:
            self.suppressions.check(caller.tenant_id, [("customer.email", [address])])
        automation = self.automations.get(caller.tenant_id, REMINDER)
        profile = self._company(caller)
        message = compose(automation, profile.settings, work_order, parent, self.config, None)
        to = [a.addr_spec for a in message.message["To"].addresses]
        subject = str(message.message["Subject"])
        entry_id, message = tracked(
            self.pixel, message, caller.tenant_id, tracks_opens=profile.settings.track_opens
        )
        created_at = utc_now()
        delivery, failure = send_now(profile, message, self.config, self.settings.budgets, [address])
        entry = SentLogEntry.attempt(
            id=entry_id,
            kind="automation",
            delivery=delivery,
            failure=failure,
            created_at=created_at,
            from_=profile.settings.from_email,
            to=to,
            bcc=[a for a in message.recipients if a not in to],
            subject=subject,
            profile="company",
            automation=REMINDER,
            work_order_id=work_order.id,
        )
        kept = {"work_order_id": work_order.id, "automation": REMINDER, "subject": subject}
        self.log(caller.tenant_id, entry, kept)
        if failure:
            self._info("work order reminder failed", category=failure.category, email_id=entry.id)
            raise DeliveryFailed(failure, email_id=entry.id)
        self._mark_reminded(caller.tenant_id, work_order)
        return entry

    def _parent(self, caller: Caller, work_order: WorkOrder) -> WorkOrder | None:
        """A day of a multi-day work order is sent to its parent's customer (as `why_no_email`)."""
        if work_order.parent_id is None:
            return None
        return self.work_orders.get(caller.tenant_id, work_order.parent_id)

    def _company(self, caller: Caller) -> SendingProfile:
        try:
            return self.settings.saved_profile(caller, "company")
        except NotFound:
            raise Conflict(
                "The company has no email settings yet: an administrator must save them under "
                "/settings/company."
            ) from None

    def _mark_reminded(self, tenant_id: str, work_order: WorkOrder) -> None:
        """`confirmation_sent` on the work order as it is now, as the worker marks a scheduled
        reminder: a write on the version read, again on a fresh read when another write came first.
        The mail is sent by then, so a lost race or an unavailable table is logged, not answered."""
        current: WorkOrder | None = work_order
        try:
            for _ in range(MARK_ATTEMPTS):
                if current is None or current.confirmation_status != "none":
                    return  # gone, already marked, or confirmed by the customer
                marked = current.model_copy(update={"confirmation_status": "confirmation_sent"})
                if self.work_orders.put(tenant_id, marked, expected_version=current.version) is not None:
                    return
                current = self.work_orders.get(tenant_id, work_order.id)
        except MailerError as exc:
            self._warning("reminder sent, work order not marked", work_order.id, error=type(exc).__name__)
            return
        self._warning("reminder sent, work order not marked: it kept changing", work_order.id)

    def _info(self, message: str, **extra: Any) -> None:
        if self.logger is not None:
            self.logger.info(message, extra=extra)

    def _warning(self, message: str, work_order_id: str, **extra: Any) -> None:
        if self.logger is not None:
            self.logger.warning(message, extra={"work_order_id": work_order_id, **extra})
