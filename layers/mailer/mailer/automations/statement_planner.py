"""The statements' scheduled run: on the schedule's day, one statement per customer whose open
invoices add up to at least the schedule's minimum balance, each (customer, statement date) once.

The customers are found with one pass over the sparse `by_due` index (every due date), which holds
only open invoices whose customer is emailed at a valid address; their amounts are added up per
customer and currency as the pages come, so nothing but the totals is kept. The worker reads each
customer's open invoices again right before sending (automations/statement_kind.py). The ledger is
read a hundred keys a call and the outbox written ten messages a call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from mailer.automations.compose import company_of, zone_of
from mailer.automations.outbox import OutboxMessage
from mailer.automations.planner import PAGE, queue_new
from mailer.billing.models import amount
from mailer.billing.statement_models import STATEMENT, is_statement_day, reaches
from mailer.billing.statements import StatementScheduleService
from mailer.config import MailerConfig
from mailer.dal.invoices_table import InvoiceStore
from mailer.dal.ledger_table import LedgerStore
from mailer.dal.outbox_queue import OutboxQueue
from mailer.errors import Forbidden
from mailer.identity import Caller
from mailer.settings.service import SettingsService
from mailer.work_orders.models import FIRST_YEAR, LAST_YEAR

QUERY_PAGE = 1000  # invoices a Query page may hold (DynamoDB stops a page at 1 MB in any case)
EVERY_DUE_DATE = (date(FIRST_YEAR, 1, 1), date(LAST_YEAR, 12, 31))


@dataclass
class StatementPlanner:
    config: MailerConfig
    settings: SettingsService
    schedules: StatementScheduleService
    invoices: InvoiceStore
    ledger: LedgerStore
    outbox: OutboxQueue
    logger: Any

    def run_for(self, caller: Caller, run_date: date | None) -> int:
        """`POST /statements/run`: the caller's company, now (administrators only)."""
        if not caller.is_admin:
            raise Forbidden("Only an administrator can run the statements.")
        return self.plan(caller.tenant_id, run_date)

    def plan(self, tenant_id: str, run_date: date | None = None) -> int:
        """Queue the company's statements of `run_date` (today in its time zone); none when the
        schedule is inactive or does not fall on that day."""
        schedule = self.schedules.get(tenant_id)
        if not schedule.active:
            return 0
        day = run_date or datetime.now(zone_of(company_of(self.settings, tenant_id), self.config)).date()
        if not is_statement_day(schedule, day):
            return 0
        first, last = EVERY_DUE_DATE
        totals: dict[str, dict[str, Decimal]] = {}
        for invoice in self.invoices.open_due_between(tenant_id, first, last, page_size=QUERY_PAGE):
            owed = totals.setdefault(invoice.customer.id, {})
            owed[invoice.currency] = owed.get(invoice.currency, Decimal(0)) + amount(invoice.amount_due)
        due = sorted(customer for customer, owed in totals.items() if reaches(owed, schedule.min_balance))
        queued = 0
        for start in range(0, len(due), PAGE):
            page = [
                OutboxMessage(
                    tenant_id=tenant_id,
                    automation=STATEMENT,
                    record_id=customer_id,
                    occurrence=day.isoformat(),
                    run_date=day,
                )
                for customer_id in due[start : start + PAGE]
            ]
            queued += queue_new(self.ledger, self.outbox, self.logger, page, what="statements")
        extra = {"tenant_id": tenant_id, "date": day.isoformat(), "customers": len(totals), "queued": queued}
        self.logger.info("statements planned", extra=extra)
        return queued
