"""Customers' statements: the company's schedule (read and saved), the statement email filled in with
a customer's open invoices, and a statement sent now on request (POST /customers/{id}/statement),
from the company account, logged as the scheduled ones are (`automation` `statement`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from mailer.billing.models import Invoice
from mailer.billing.sent_now import LogEntry, company_profile, send_and_log, to_customer
from mailer.billing.statement_models import (
    STATEMENT,
    Statement,
    StatementSchedule,
    StatementScheduleInput,
    current_customer,
    default_schedule,
    statement_context,
    statement_document,
)
from mailer.config import MailerConfig
from mailer.dal import keys
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.dal.invoices_table import InvoiceStore
from mailer.dal.settings_table import SettingsStore
from mailer.delivery.failures import DeliveryFailed
from mailer.delivery.html_text import html_to_text
from mailer.delivery.message import OutgoingMessage
from mailer.documents.attachments import LoadedAttachments, load_attachments
from mailer.documents.models import AttachmentRef, Rendered
from mailer.errors import Conflict, Forbidden, InvalidInput, NotFound
from mailer.identity import Caller
from mailer.sent_log.models import SentLogEntry
from mailer.settings.models import SettingsView
from mailer.settings.service import SendingProfile, SettingsService
from mailer.suppression.service import Suppressions
from mailer.templating.engine import check_template, render, render_subject
from mailer.templating.fields import company_values, long_date, sample_context
from mailer.tracking.opens import OpenPixel
from mailer.work_orders.models import valid_address


class StatementScheduleService:
    """The company's statement schedule: the default (inactive) until an administrator saves one."""

    def __init__(self, store: SettingsStore, clock: Callable[[], str]) -> None:
        self.store = store
        self.clock = clock

    def get(self, tenant_id: str) -> StatementSchedule:
        item = self.store.get(tenant_id, keys.STATEMENT_SCHEDULE_SK)
        return default_schedule() if item is None else StatementSchedule.model_validate(item)

    def save(self, caller: Caller, body: StatementScheduleInput) -> StatementSchedule:
        if not caller.is_admin:
            raise Forbidden("Only an administrator can change the statement schedule.")
        check_template(body.subject, "subject", "statement")
        check_template(body.body_html, "body_html", "statement")
        item = body.model_dump(exclude={"is_default", "updated_at", "updated_by"}) | {
            "is_default": False,
            "updated_at": self.clock(),
            "updated_by": caller.email or caller.user_id,
        }
        stored = dict(item)
        if body.active:
            # The scheduled run finds the companies with an active schedule with one Query.
            stored |= {"gsi1pk": keys.ACTIVE_STATEMENT_INDEX_PK, "gsi1sk": caller.tenant_id}
        self.store.put(caller.tenant_id, keys.STATEMENT_SCHEDULE_SK, stored)
        return StatementSchedule.model_validate(item)


def open_invoices_of(invoices: InvoiceStore, tenant_id: str, customer_id: str) -> list[Invoice]:
    """The customer's open invoices, for a statement asked for by a person: 404 when the company
    knows no invoice of the customer (nor does it tell of another company's), 409 when none is open
    (a statement of nothing to pay is not sent; GET /customers/{id}/invoices shows the others)."""
    found = invoices.for_customer(tenant_id, customer_id, "open")
    if found:
        return found
    if not invoices.for_customer(tenant_id, customer_id):
        raise NotFound(f"No invoices of customer {customer_id}.")
    raise Conflict(f"Customer {customer_id} has no open invoices: there is nothing to put on a statement.")


def statement_wording(
    schedule: StatementSchedule, statement: Statement | None, company: SettingsView | None, today: date
) -> Rendered:
    """The schedule's subject and body filled in with the statement, the company and today; what is
    not given keeps its sample value (previews). The text version is derived from the HTML: a table
    reads a row a line."""
    context = sample_context("statement")
    if statement is not None:
        context |= statement_context(statement)
    if company is not None:
        context["company"] = company_values(company)
    context["today"] = long_date(today)
    html = render(schedule.body_html, context, html=True)
    return Rendered(subject=render_subject(schedule.subject, context), html=html, text=html_to_text(html))


def invoice_pdfs(
    attachments: AttachmentStore,
    config: MailerConfig,
    tenant_id: str,
    statement: Statement,
    schedule: StatementSchedule,
) -> LoadedAttachments:
    """The PDFs of the listed invoices that have one, when the schedule attaches them, checked as a
    document email's attachments are (the company's own uploads, their sizes and total, real PDFs)."""
    refs = [
        AttachmentRef(upload_id=invoice.pdf_upload_id)
        for invoice in statement.invoices
        if schedule.attach_invoices and invoice.pdf_upload_id
    ]
    return load_attachments(attachments, tenant_id, refs, config.attachment_max_bytes, resending=False)


def statement_message(
    profile: SendingProfile,
    schedule: StatementSchedule,
    statement: Statement,
    loaded: LoadedAttachments,
    config: MailerConfig,
    *,
    automated: bool,
) -> tuple[Rendered, OutgoingMessage]:
    """The statement to the customer from the company account, with the company's archive copy;
    `automated` (the scheduled run's) marks it `Auto-Submitted`, a person's request does not."""
    settings = profile.settings
    today = datetime.now(ZoneInfo(settings.timezone or config.default_timezone)).date()
    rendered = statement_wording(schedule, statement, settings, today)
    assert statement.customer.email
    return rendered, to_customer(settings, statement.customer.email, rendered, loaded, automated=automated)


@dataclass
class CustomerStatements:
    settings: SettingsService
    invoices: InvoiceStore
    schedules: StatementScheduleService
    attachments: AttachmentStore
    config: MailerConfig
    log: LogEntry  # the sent log's write, retried, then queued (DocumentEmailService.keep_entry)
    logger: Any = None
    suppressions: Suppressions | None = None  # the company's list: a suppressed customer is a 422
    pixel: OpenPixel | None = None  # open tracking, for companies with track_opens on

    def send(self, caller: Caller, customer_id: str) -> SentLogEntry:
        """Send the customer's statement of today (in the company's time zone) now and log it; any
        user of the company may.

        Unlike the scheduled run, a statement asked for by a person does not look at the schedule's
        `active` flag, its days or `min_balance`, nor at the customer's automated contact method: it
        needs open invoices (404 when the company knows no invoice of the customer, 409 when none is
        open) and a valid customer address (422 naming `customer.email`). It is not an automated
        message (no `Auto-Submitted`), and it is not counted in the scheduled run's ledger, so it
        neither takes nor blocks the scheduled statement of the same day.
        """
        found = open_invoices_of(self.invoices, caller.tenant_id, customer_id)
        address = current_customer(found).email
        if address is None or not valid_address(address):
            raise InvalidInput.on("customer.email", "the customer has no valid email address")
        if self.suppressions is not None:
            self.suppressions.check(caller.tenant_id, [("customer.email", [address])])
        profile = company_profile(self.settings, caller)
        zone = ZoneInfo(profile.settings.timezone or self.config.default_timezone)
        statement = Statement.of(customer_id, found, datetime.now(zone).date())
        assert statement is not None, "open_invoices_of"
        schedule = self.schedules.get(caller.tenant_id)
        loaded = invoice_pdfs(self.attachments, self.config, caller.tenant_id, statement, schedule)
        sending = statement_message(profile, schedule, statement, loaded, self.config, automated=False)
        fields = {"automation": STATEMENT, "document": statement_document(statement)}
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
                kept={"customer_id": customer_id, "statement_date": statement.day.isoformat()},
            )
        except DeliveryFailed as exc:
            if self.logger is not None:
                self.logger.info(
                    "statement failed", extra={"category": exc.failure.category, "email_id": exc.email_id}
                )
            raise
