"""Previews of billing email, as the settings screens show them: an invoice reminder rule's wording
with an invoice or sample data (POST /invoice-reminders/{id}/preview), and the statement wording
with a customer's open invoices or sample data (POST /statements/preview). Nothing is sent."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from mailer.billing.models import CustomerId, InvoiceId, invoice_context
from mailer.billing.rule_service import InvoiceRuleService
from mailer.billing.statement_models import Statement
from mailer.billing.statements import StatementScheduleService, open_invoices_of, statement_wording
from mailer.config import MailerConfig
from mailer.dal.invoices_table import InvoiceStore
from mailer.delivery.html_text import html_to_text
from mailer.documents.models import Rendered
from mailer.errors import NotFound
from mailer.identity import Caller
from mailer.settings.models import SettingsView
from mailer.settings.service import SettingsService
from mailer.templating.engine import render, render_subject
from mailer.templating.fields import company_values, long_date, sample_context


class ReminderPreviewRequest(BaseModel):
    """Body of POST /invoice-reminders/{rule_id}/preview."""

    model_config = ConfigDict(extra="forbid")

    invoice_id: InvoiceId | None = None


class StatementPreviewRequest(BaseModel):
    """Body of POST /statements/preview."""

    model_config = ConfigDict(extra="forbid")

    customer_id: CustomerId | None = None


@dataclass
class BillingPreviews:
    config: MailerConfig
    settings: SettingsService
    rules: InvoiceRuleService
    schedules: StatementScheduleService
    invoices: InvoiceStore

    def reminder(self, caller: Caller, rule_id: str, invoice_id: str | None) -> Rendered:
        """The rule's saved (or default) wording with this invoice, or with sample data; fields the
        company's settings give (company.*) keep their samples until the settings are saved."""
        rule = self.rules.get(caller.tenant_id, rule_id)
        invoice = None
        if invoice_id:
            invoice = self.invoices.get(caller.tenant_id, invoice_id)
            if invoice is None:
                raise NotFound(f"No invoice {invoice_id}.")
        company = self._company(caller)
        today = self._today(company)
        context = sample_context("invoice")
        if invoice is not None:
            context |= invoice_context(invoice, today)
        if company is not None:
            context["company"] = company_values(company)
        context["today"] = long_date(today)
        html = render(rule.body_html, context, html=True)
        text = render(rule.body_text, context, html=False) if rule.body_text else html_to_text(html)
        return Rendered(subject=render_subject(rule.subject, context), html=html, text=text)

    def statement(self, caller: Caller, customer_id: str | None) -> Rendered:
        """The saved (or default) statement wording with the customer's open invoices of today, or
        with sample data; 404 and 409 as a statement sent now (no invoices known, none open)."""
        statement = None
        company = self._company(caller)
        today = self._today(company)
        if customer_id:
            found = open_invoices_of(self.invoices, caller.tenant_id, customer_id)
            statement = Statement.of(customer_id, found, today)
        schedule = self.schedules.get(caller.tenant_id)
        return statement_wording(schedule, statement, company, today)

    def _company(self, caller: Caller) -> SettingsView | None:
        try:
            return self.settings.get(caller, "company")
        except NotFound:
            return None

    def _today(self, company: SettingsView | None) -> date:
        zone = ZoneInfo((company.timezone if company else None) or self.config.default_timezone)
        return datetime.now(zone).date()
