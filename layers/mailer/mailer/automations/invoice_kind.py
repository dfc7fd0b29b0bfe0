"""Invoices as a record kind of the engine: the daily run's invoice reminders.

The worker re-reads each invoice right before the claim, so a payment (or a void) recorded after the
run planned the reminder stops it, even one already queued. A rule switched off, or changed so that
it no longer falls on the planned day, stops it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailer.automations.kinds import Job, Recipient
from mailer.automations.outbox import OutboxMessage
from mailer.billing.models import Invoice
from mailer.billing.remind import invoice_pdf, reminder_document, reminder_message
from mailer.billing.rule_service import InvoiceRuleService
from mailer.billing.rules import (
    INVOICE_REMINDER,
    ReminderRule,
    ledger_occurrence,
    occurrence_on,
    rule_of,
    why_not_reminded,
)
from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.dal.invoices_table import InvoiceStore
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.message import OutgoingMessage
from mailer.errors import InvalidInput
from mailer.identity import Caller
from mailer.settings.service import SendingProfile


@dataclass
class InvoiceReminderKind:
    config: MailerConfig
    rules: InvoiceRuleService
    invoices: InvoiceStore
    attachments: AttachmentStore
    noun: str = "invoice"

    def wording(self, tenant_id: str, message: OutboxMessage) -> Any:
        return self.rules.get(tenant_id, rule_of(message.occurrence))

    def wording_key(self, message: OutboxMessage) -> str:
        return rule_of(message.occurrence)

    def read(self, jobs: list[Job]) -> None:
        found = self.invoices.get_many({(j.tenant_id, j.message.record_id) for j in jobs})
        for job in jobs:
            job.record = found.get((job.tenant_id, job.message.record_id))

    def why_not(self, job: Job) -> str | None:
        rule: ReminderRule = job.wording
        invoice: Invoice | None = job.record
        if not rule.active:
            return "rule inactive"
        if invoice is None:
            return "invoice gone"
        reason = why_not_reminded(rule, invoice)
        if reason:
            return reason
        planned = job.message.run_date
        if planned is None:
            return None
        k = occurrence_on(rule, invoice, planned)
        if k is None or ledger_occurrence(rule.rule_id, k) != job.message.occurrence:
            return "no longer due this reminder"  # the due date or the rule changed since the run
        return None

    def compose(self, job: Job, profile: SendingProfile) -> OutgoingMessage:
        rule: ReminderRule = job.wording
        invoice: Invoice = job.record
        try:
            loaded = invoice_pdf(self.attachments, self.config, job.tenant_id, invoice, rule)
        except InvalidInput as exc:  # the PDF is gone, too large or no PDF: it will not get better
            raise DeliveryFailed(pdf_unusable(invoice, exc)) from None
        _, message = reminder_message(profile, rule, invoice, loaded, self.config, automated=True)
        job.entry["attachments"] = loaded.infos
        return message

    def recipient(self, job: Job) -> Recipient:
        invoice: Invoice = job.record
        return Recipient(invoice.customer.name, invoice.customer.email)

    def to_addresses(self, job: Job) -> list[str]:
        email = job.record.customer.email
        return [email] if email else []

    def number(self, job: Job) -> str:
        return str(job.record.number)

    def entry_fields(self, job: Job) -> dict[str, Any]:
        return {
            "profile": "company",
            "automation": INVOICE_REMINDER,
            "document": reminder_document(job.record),
        }

    def sender_of(self, job: Job) -> Caller | None:
        return None  # the company account

    def fix_at(self, message: OutboxMessage) -> str:
        return f"/invoice-reminders/{rule_of(message.occurrence)}"


def pdf_unusable(invoice: Invoice, exc: InvalidInput) -> Failure:
    return Failure(
        stage="attachments",
        category="attachment_unusable",
        transient=False,
        hint=f"The PDF of invoice {invoice.number} could not be attached ({exc.detail}). Upload it again "
        "and sync the invoice with its new pdf_upload_id, or send the reminder by hand.",
    )
