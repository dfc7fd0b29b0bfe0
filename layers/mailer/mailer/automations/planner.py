"""The reminder run: queue the reminders due on a day, leaving out what the ledger already holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from mailer.automations.compose import company_of, zone_of
from mailer.automations.outbox import OutboxMessage
from mailer.automations.service import AutomationService
from mailer.config import MailerConfig
from mailer.dal.ledger_table import LedgerStore
from mailer.dal.outbox_queue import OutboxQueue
from mailer.dal.work_orders_table import WorkOrderStore
from mailer.errors import Forbidden, ServiceUnavailable
from mailer.identity import Caller
from mailer.settings.service import SettingsService
from mailer.work_orders.models import reminder_start_date

PAGE = 100  # work orders looked up in the ledger at a time (BatchGetItem takes 100 keys)


@dataclass
class ReminderPlanner:
    config: MailerConfig
    settings: SettingsService
    automations: AutomationService
    work_orders: WorkOrderStore
    ledger: LedgerStore
    outbox: OutboxQueue
    logger: Any

    def run_for(self, caller: Caller, run_date: date | None) -> int:
        """`POST /automations/reminder/run`: the caller's company, now (administrators only)."""
        if not caller.is_admin:
            raise Forbidden("Only an administrator can run the reminders.")
        return self.plan(caller.tenant_id, run_date)

    def plan(self, tenant_id: str, run_date: date | None = None) -> int:
        """Queue the reminders of work orders starting days_before after the run date."""
        automation = self.automations.get(tenant_id, "reminder")
        if not automation.active:
            return 0
        today = run_date or datetime.now(zone_of(company_of(self.settings, tenant_id), self.config)).date()
        start_date = (today + timedelta(days=automation.days_before or 0)).isoformat()
        queued = 0
        page: list[OutboxMessage] = []
        for work_order in self.work_orders.due(tenant_id, start_date):
            if reminder_start_date(work_order) == start_date:
                page.append(
                    OutboxMessage(
                        tenant_id=tenant_id,
                        automation="reminder",
                        record_id=work_order.id,
                        occurrence=start_date,
                    )
                )
            if len(page) == PAGE:
                queued += self._queue_new(page)
                page = []
        queued += self._queue_new(page)
        self.logger.info(
            "reminders planned", extra={"tenant_id": tenant_id, "start_date": start_date, "queued": queued}
        )
        return queued

    def _queue_new(self, messages: list[OutboxMessage]) -> int:
        return queue_new(self.ledger, self.outbox, self.logger, messages)


def queue_new(
    ledger: LedgerStore,
    outbox: OutboxQueue,
    logger: Any,
    messages: list[OutboxMessage],
    what: str = "reminders",
) -> int:
    """Queue the messages the ledger does not hold yet (one BatchGetItem, SendMessageBatch by ten);
    how many were queued. Raises ServiceUnavailable when the queue refused some: the ledger does not
    hold them, so the next run queues them, and the caller must hear of it, not see an idle run."""
    if not messages:
        return 0
    done = ledger.existing(m.ledger_key for m in messages)
    fresh = [m for m in messages if m.ledger_key not in done]
    failed = outbox.send(fresh)
    if failed:
        logger.error(f"{what} not queued", extra={"count": len(failed)})
        raise ServiceUnavailable(
            f"{len(failed)} {what} could not be queued ({len(fresh) - len(failed)} were); run again."
        )
    return len(fresh)
