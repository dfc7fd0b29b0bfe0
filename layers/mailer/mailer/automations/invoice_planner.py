"""The invoice reminders' daily run: for one company and day, queue every (rule, invoice, send) that
falls on that day and is not in the ledger yet.

Each active rule falls on a few due dates a day: `day - offset_days - k * repeat_every_days` for
k below `max_sends` (one without a repeat; every earlier due date with a repeat and no maximum).
Each of those dates is one Query of the sparse `by_due` index, which holds only open invoices whose
customer is emailed at a valid address, so the run reads only invoices that are due; nothing Scans.
The ledger is read a hundred keys a call and the outbox written ten messages a call.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from mailer.automations.compose import company_of, zone_of
from mailer.automations.outbox import OutboxMessage
from mailer.automations.planner import PAGE, queue_new
from mailer.billing.rule_service import InvoiceRuleService
from mailer.billing.rules import INVOICE_REMINDER, ReminderRule, is_due, ledger_occurrence, occurrence_on
from mailer.config import MailerConfig
from mailer.dal.invoices_table import InvoiceStore
from mailer.dal.ledger_table import LedgerStore
from mailer.dal.outbox_queue import OutboxQueue
from mailer.errors import Forbidden
from mailer.identity import Caller
from mailer.settings.service import SettingsService
from mailer.work_orders.models import FIRST_YEAR

QUERY_PAGE = 1000  # invoices a Query page may hold (DynamoDB stops a page at 1 MB in any case)
OPEN_ENDED = date(FIRST_YEAR, 1, 1)


def due_dates(rule: ReminderRule, day: date) -> list[tuple[date, date]]:
    """The due-date ranges (first, last, both included) whose invoices the rule may remind on `day`:
    one date per send k, or, for a repeat without a maximum, every due date up to the first send's."""
    latest = day - timedelta(days=rule.offset_days)
    if rule.repeat_every_days is None:
        return [(latest, latest)]
    if rule.max_sends is None:
        return [(OPEN_ENDED, latest)] if latest >= OPEN_ENDED else []
    dates = (latest - timedelta(days=k * rule.repeat_every_days) for k in range(rule.max_sends))
    return [(d, d) for d in dates if d >= OPEN_ENDED]


@dataclass
class InvoiceReminderPlanner:
    config: MailerConfig
    settings: SettingsService
    rules: InvoiceRuleService
    invoices: InvoiceStore
    ledger: LedgerStore
    outbox: OutboxQueue
    logger: Any

    def run_for(self, caller: Caller, run_date: date | None) -> int:
        """`POST /invoice-reminders/run`: the caller's company, now (administrators only)."""
        if not caller.is_admin:
            raise Forbidden("Only an administrator can run the invoice reminders.")
        return self.plan(caller.tenant_id, run_date)

    def plan(self, tenant_id: str, run_date: date | None = None) -> int:
        """Queue the company's invoice reminders of `run_date` (today in its time zone)."""
        rules = [rule for rule in self.rules.list(tenant_id) if rule.active]
        if not rules:
            return 0
        day = run_date or datetime.now(zone_of(company_of(self.settings, tenant_id), self.config)).date()
        ranges: dict[tuple[date, date], list[ReminderRule]] = defaultdict(list)
        for rule in rules:
            for span in due_dates(rule, day):
                ranges[span].append(rule)
        queued = 0
        page: list[OutboxMessage] = []
        for (first, last), spanning in sorted(ranges.items()):
            for invoice in self.invoices.open_due_between(tenant_id, first, last, page_size=QUERY_PAGE):
                for rule in spanning:
                    if not is_due(rule, invoice, day):
                        continue
                    k = occurrence_on(rule, invoice, day)
                    assert k is not None, "is_due"
                    page.append(
                        OutboxMessage(
                            tenant_id=tenant_id,
                            automation=INVOICE_REMINDER,
                            record_id=invoice.id,
                            occurrence=ledger_occurrence(rule.rule_id, k),
                            run_date=day,
                        )
                    )
                if len(page) >= PAGE:
                    queued += self._queue(page)
                    page = []
        queued += self._queue(page)
        extra = {"tenant_id": tenant_id, "date": day.isoformat(), "queued": queued}
        self.logger.info("invoice reminders planned", extra=extra)
        return queued

    def _queue(self, messages: list[OutboxMessage]) -> int:
        return queue_new(self.ledger, self.outbox, self.logger, messages, what="invoice reminders")
