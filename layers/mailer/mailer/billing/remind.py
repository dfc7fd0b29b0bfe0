"""An invoice reminder sent now, on request (POST /invoices/{id}/remind): a rule's wording filled in
with the invoice, from the company account, with the invoice's PDF when the rule attaches it, logged
in the sent log as the daily run's reminders are (`automation` `invoice_reminder`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

from mailer.billing.models import Invoice, invoice_context
from mailer.billing.rule_service import InvoiceRuleService
from mailer.billing.rules import INVOICE_REMINDER, ReminderRule, RuleId
from mailer.billing.sent_now import LogEntry, company_profile, send_and_log, to_customer
from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.dal.invoices_table import InvoiceStore
from mailer.delivery.failures import DeliveryFailed
from mailer.delivery.html_text import html_to_text
from mailer.delivery.message import OutgoingMessage
from mailer.documents.attachments import LoadedAttachments, load_attachments
from mailer.documents.models import AttachmentRef, Rendered
from mailer.errors import Conflict, InvalidInput, NotFound
from mailer.identity import Caller
from mailer.sent_log.models import SentLogEntry
from mailer.settings.models import SettingsView
from mailer.settings.service import SendingProfile, SettingsService
from mailer.suppression.service import Suppressions
from mailer.templating.engine import render, render_subject
from mailer.templating.fields import company_values, long_date
from mailer.tracking.opens import OpenPixel
from mailer.work_orders.models import valid_address

DEFAULT_RULE = "overdue"  # whose wording a reminder without a rule_id has


class RemindRequest(BaseModel):
    """Body of POST /invoices/{id}/remind."""

    model_config = ConfigDict(extra="forbid")

    rule_id: RuleId | None = None


def reminder_wording(rule: ReminderRule, invoice: Invoice, company: SettingsView, zone: ZoneInfo) -> Rendered:
    """The rule's subject and bodies filled in with the invoice, its customer and the company;
    `invoice.days_overdue` and `today` count from today in the company's time zone."""
    today = datetime.now(zone).date()
    context = invoice_context(invoice, today) | {
        "company": company_values(company),
        "today": long_date(today),
    }
    html = render(rule.body_html, context, html=True)
    text = render(rule.body_text, context, html=False) if rule.body_text else html_to_text(html)
    return Rendered(subject=render_subject(rule.subject, context), html=html, text=text)


def reminder_document(invoice: Invoice) -> dict[str, Any]:
    """The sent log's `document` of a reminder: the invoice as POST /documents/email names one, so
    GET /emails?document_type=invoice&document_number=... finds its reminders beside its emails."""
    return {
        "type": "invoice",
        "number": invoice.number,
        "customer_name": invoice.customer.name,
        "amount": invoice.amount_due,
        "currency": invoice.currency,
        "due_date": invoice.due_date.isoformat(),
        "invoice_id": invoice.id,
    }


def invoice_pdf(
    attachments: AttachmentStore, config: MailerConfig, tenant_id: str, invoice: Invoice, rule: ReminderRule
) -> LoadedAttachments:
    """The invoice's PDF when the rule attaches it, checked as a document email's attachments are
    (the company's own upload, its declared size, the limit, really a PDF)."""
    refs = (
        [AttachmentRef(upload_id=invoice.pdf_upload_id)] if rule.attach_pdf and invoice.pdf_upload_id else []
    )
    return load_attachments(attachments, tenant_id, refs, config.attachment_max_bytes, resending=False)


def reminder_message(
    profile: SendingProfile,
    rule: ReminderRule,
    invoice: Invoice,
    loaded: LoadedAttachments,
    config: MailerConfig,
    *,
    automated: bool,
) -> tuple[Rendered, OutgoingMessage]:
    """The reminder to the invoice's customer from the company account, with the company's archive
    copy; `automated` (the daily run's) marks it `Auto-Submitted`, a person's request does not."""
    settings = profile.settings
    zone = ZoneInfo(settings.timezone or config.default_timezone)
    rendered = reminder_wording(rule, invoice, settings, zone)
    assert invoice.customer.email
    return rendered, to_customer(settings, invoice.customer.email, rendered, loaded, automated=automated)


@dataclass
class InvoiceReminders:
    settings: SettingsService
    invoices: InvoiceStore
    rules: InvoiceRuleService
    attachments: AttachmentStore
    config: MailerConfig
    log: LogEntry  # the sent log's write, retried, then queued (DocumentEmailService._log)
    logger: Any = None
    suppressions: Suppressions | None = None  # the company's list: a suppressed customer is a 422
    pixel: OpenPixel | None = None  # open tracking, for companies with track_opens on

    def remind(self, caller: Caller, invoice_id: str, body: RemindRequest) -> SentLogEntry:
        """Send the rule's reminder of the invoice now and log it; any user of the company may.

        Unlike the daily run, a reminder asked for by a person does not look at the customer's
        automated contact method, the rule's `active` flag, its days or `min_amount_due`: it needs
        only an open invoice (409 when paid or void) and a valid customer address (422 naming
        `customer.email`). It is not an automated message (no `Auto-Submitted`: a person asked for
        it), and it is not counted in the daily run's ledger, so it neither takes nor blocks a
        scheduled reminder.
        """
        invoice = self.invoices.get(caller.tenant_id, invoice_id)
        if invoice is None:
            raise NotFound(f"No invoice {invoice_id}.")
        rule = self.rules.get(caller.tenant_id, body.rule_id or DEFAULT_RULE)
        if invoice.status != "open":
            raise Conflict(f"Invoice {invoice.number} is {invoice.status}: it gets no more reminders.")
        address = invoice.customer.email
        if address is None or not valid_address(address):
            raise InvalidInput.on("customer.email", "the invoice's customer has no valid email address")
        if self.suppressions is not None:
            self.suppressions.check(caller.tenant_id, [("customer.email", [address])])
        profile = company_profile(self.settings, caller)
        loaded = invoice_pdf(self.attachments, self.config, caller.tenant_id, invoice, rule)
        sending = reminder_message(profile, rule, invoice, loaded, self.config, automated=False)
        fields = {"automation": INVOICE_REMINDER, "document": reminder_document(invoice)}
        try:
            return send_and_log(
                caller,
                profile,
                sending,
                loaded,
                config=self.config,
                budgets=self.settings.budgets,
                log=self.log,
                pixel=self.pixel,
                fields=fields,
                kept={"invoice_id": invoice.id, "rule_id": rule.rule_id},
            )
        except DeliveryFailed as exc:
            if self.logger is not None:
                self.logger.info(
                    "invoice reminder failed",
                    extra={"category": exc.failure.category, "email_id": exc.email_id},
                )
            raise
