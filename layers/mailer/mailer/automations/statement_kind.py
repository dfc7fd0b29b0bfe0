"""Customers as a record kind of the engine: the scheduled statements.

A queued statement names the customer and the statement's date, nothing of its invoices: the worker
reads the customer's open invoices right before the claim (one Query of the by_customer index per
statement), so a payment recorded after the run is off the statement, and a customer left with
nothing open, or with an open total below the schedule's minimum, gets no statement. A schedule
switched off, or moved off the planned day, stops what was queued too.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from mailer.automations.kinds import Job, Recipient
from mailer.automations.outbox import OutboxMessage
from mailer.billing.statement_models import (
    STATEMENT,
    Statement,
    StatementSchedule,
    statement_document,
    statement_number,
    why_not_sent,
)
from mailer.billing.statements import StatementScheduleService, invoice_pdfs, statement_message
from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.dal.invoices_table import InvoiceStore
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.message import OutgoingMessage
from mailer.errors import Conflict, Gone, InvalidInput, MailerError, NotFound, PayloadTooLarge
from mailer.identity import Caller
from mailer.settings.service import SendingProfile

# What an invoice's PDF can be refused for that a retry does not mend: gone, not the company's, too
# large together, not a real PDF. A store that cannot be read (ServiceUnavailable) is retried.
UNUSABLE_PDF = (InvalidInput, NotFound, Gone, Conflict, PayloadTooLarge)


def statement_day(message: OutboxMessage) -> date:
    """The statement's date: the day the run planned it for (its ledger occurrence)."""
    return message.run_date or date.fromisoformat(message.occurrence)


@dataclass
class StatementKind:
    config: MailerConfig
    schedules: StatementScheduleService
    invoices: InvoiceStore
    attachments: AttachmentStore
    noun: str = "statement"

    def wording(self, tenant_id: str, message: OutboxMessage) -> Any:
        return self.schedules.get(tenant_id)

    def wording_key(self, message: OutboxMessage) -> str:
        return "schedule"  # one schedule a company

    def read(self, jobs: list[Job]) -> None:
        for job in jobs:
            customer_id = job.message.record_id
            found = self.invoices.for_customer(job.tenant_id, customer_id, "open")
            job.record = Statement.of(customer_id, found, statement_day(job.message))

    def why_not(self, job: Job) -> str | None:
        return why_not_sent(job.wording, job.record)

    def compose(self, job: Job, profile: SendingProfile) -> OutgoingMessage:
        schedule: StatementSchedule = job.wording
        statement: Statement = job.record
        try:
            loaded = invoice_pdfs(self.attachments, self.config, job.tenant_id, statement, schedule)
        except UNUSABLE_PDF as exc:
            raise DeliveryFailed(pdfs_unusable(statement, exc)) from None
        _, message = statement_message(profile, schedule, statement, loaded, self.config, automated=True)
        job.entry["attachments"] = loaded.infos
        return message

    def recipient(self, job: Job) -> Recipient:
        statement: Statement | None = job.record
        if statement is None:
            return Recipient(None, None)
        return Recipient(statement.customer.name, statement.customer.email)

    def to_addresses(self, job: Job) -> list[str]:
        email = self.recipient(job).email
        return [email] if email else []

    def number(self, job: Job) -> str:
        return statement_number(job.message.record_id, statement_day(job.message))

    def entry_fields(self, job: Job) -> dict[str, Any]:
        return {"profile": "company", "automation": STATEMENT, "document": statement_document(job.record)}

    def sender_of(self, job: Job) -> Caller | None:
        return None  # the company account

    def fix_at(self, message: OutboxMessage) -> str:
        return "/statements/schedule"


def pdfs_unusable(statement: Statement, exc: MailerError) -> Failure:
    return Failure(
        stage="attachments",
        category="attachment_unusable",
        transient=False,
        hint=f"The invoice PDFs of statement {statement.number} could not be attached ({exc.detail}). "
        "Upload them again and sync the invoices with their new pdf_upload_id, switch attach_invoices "
        "off under /statements/schedule, or send the statement by hand.",
    )
