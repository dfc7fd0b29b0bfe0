"""The merge fields templates may use, by name (`{{ work_order.scheduled_date }}`) or number (`[21]`)."""

from __future__ import annotations

from copy import deepcopy
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mailer.settings.models import SettingsView

# "invoice": invoice reminders, which know the customer, the company and the invoice, not a work order.
# "statement": customers' statements, which know the customer, the company and the open invoices.
TemplateKind = Literal["document", "automation", "invoice", "statement"]


@dataclass(frozen=True)
class MergeField:
    number: int
    name: str
    description: str
    example: str
    kinds: tuple[TemplateKind, ...]
    # What previews and the save-time check fill the field with, when it is not the example text
    # (a list to loop over: statement.invoices).
    sample: Any = field(default=None, compare=False, hash=False)

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        del data["kinds"], data["sample"]
        return data


_EVERY: tuple[TemplateKind, ...] = ("document", "automation", "invoice", "statement")
_CUSTOMER: tuple[TemplateKind, ...] = ("automation", "invoice", "statement")
_INVOICE: tuple[TemplateKind, ...] = ("invoice",)
_STATEMENT: tuple[TemplateKind, ...] = ("statement",)
# The open invoices of the sample statement: one overdue, one not yet due.
_SAMPLE_STATEMENT_INVOICES = (
    {
        "number": "INV-1001",
        "due_date": "November 1, 2026",
        "amount_due": "120.00 USD",
        "currency": "USD",
        "days_overdue": "22",
    },
    {
        "number": "INV-1002",
        "due_date": "December 1, 2026",
        "amount_due": "80.00 USD",
        "currency": "USD",
        "days_overdue": "0",
    },
)
_AUTO: tuple[TemplateKind, ...] = ("automation",)
_DOC: tuple[TemplateKind, ...] = ("document",)

MERGE_FIELDS: tuple[MergeField, ...] = (
    MergeField(1, "customer.name", "Customer's full name", "Dana Whitfield", _CUSTOMER),
    MergeField(2, "customer.first_name", "Customer's first name", "Dana", _CUSTOMER),
    MergeField(3, "customer.email", "Customer's email address", "dana@example.com", _CUSTOMER),
    MergeField(4, "customer.phone", "Customer's phone number", "(312) 555-0142", _AUTO),
    MergeField(5, "site.address", "Service address of the work order", "1420 W Elm St, Springfield", _AUTO),
    MergeField(10, "work_order.number", "Work order number", "WO-1001", _AUTO),
    MergeField(11, "work_order.description", "What the job is", "Annual furnace tune-up", _AUTO),
    MergeField(12, "work_order.status", "Work order status", "Scheduled", _AUTO),
    MergeField(20, "work_order.scheduled_day", "Weekday of the appointment", "Tuesday", _AUTO),
    MergeField(21, "work_order.scheduled_date", "Work order scheduled date", "November 24, 2026", _AUTO),
    MergeField(22, "work_order.scheduled_time", "Scheduled start time", "9:00 AM", _AUTO),
    MergeField(23, "work_order.scheduled_end_time", "Scheduled end time (empty if none)", "11:00 AM", _AUTO),
    MergeField(24, "work_order.arrival_window", "Start and end time together", "9:00 AM - 11:00 AM", _AUTO),
    MergeField(30, "technician.name", "Assigned technician's full name", "Luis Ortega", _AUTO),
    MergeField(31, "technician.first_name", "Assigned technician's first name", "Luis", _AUTO),
    MergeField(
        32,
        "technician.photo",
        "The technician's photo, shown in the email (HTML only; empty when none)",
        '<img src="cid:technician-photo">',
        _AUTO,
    ),
    MergeField(40, "company.name", "Your company name (the company From name)", "Acme Plumbing", _EVERY),
    MergeField(41, "company.email", "Your company's sending address", "office@acme.example", _EVERY),
    MergeField(42, "company.reply_to", "Where replies go", "office@acme.example", _EVERY),
    MergeField(50, "document.type", "Document type", "Invoice", _DOC),
    MergeField(51, "document.number", "Document number", "INV-1001", _DOC),
    MergeField(52, "document.customer_name", "Customer on the document", "Dana Whitfield", _DOC),
    MergeField(53, "document.amount", "Amount with currency", "$120.00", _DOC),
    MergeField(54, "document.currency", "Currency code", "USD", _DOC),
    MergeField(55, "document.due_date", "Due date", "December 1, 2026", _DOC),
    MergeField(60, "sender.name", "Name of the person or account sending", "Jamie Cole", _DOC),
    MergeField(61, "sender.email", "Address the email is sent from", "jamie@acme.example", _DOC),
    MergeField(70, "today", "Today's date in the company's time zone", "November 23, 2026", _EVERY),
    MergeField(80, "invoice.number", "Invoice number", "INV-1001", _INVOICE),
    MergeField(81, "invoice.issue_date", "Date the invoice was issued", "November 1, 2026", _INVOICE),
    MergeField(82, "invoice.due_date", "Date the invoice is due", "December 1, 2026", _INVOICE),
    MergeField(83, "invoice.total", "Invoice total, without the currency", "120.00", _INVOICE),
    MergeField(84, "invoice.amount_due", "Amount still to pay, without the currency", "120.00", _INVOICE),
    MergeField(85, "invoice.currency", "Currency code of the amounts", "USD", _INVOICE),
    MergeField(86, "invoice.days_overdue", "Days past the due date (0 until then)", "7", _INVOICE),
    MergeField(
        87,
        "invoice.payment_url",
        "Where the customer pays online (empty if none)",
        "https://pay.example/i/1001",
        _INVOICE,
    ),
    MergeField(90, "statement.date", "Date of the statement", "November 23, 2026", _STATEMENT),
    MergeField(
        91,
        "statement.total_due",
        "Total of the open invoices, with the currency (one total per currency when they differ)",
        "200.00 USD",
        _STATEMENT,
    ),
    MergeField(
        92,
        "statement.invoices",
        "The open invoices, oldest due date first, to loop over: {% for i in statement.invoices %}; "
        "each has number, due_date, amount_due (with its currency), currency and days_overdue",
        "INV-1001, November 1, 2026, 120.00 USD, 22; INV-1002, December 1, 2026, 80.00 USD, 0",
        _STATEMENT,
        sample=list(_SAMPLE_STATEMENT_INVOICES),
    ),
)

BY_NUMBER: dict[int, MergeField] = {f.number: f for f in MERGE_FIELDS}
BY_NAME: dict[str, MergeField] = {f.name: f for f in MERGE_FIELDS}


def names_for(kind: TemplateKind) -> frozenset[str]:
    return frozenset(f.name for f in MERGE_FIELDS if kind in f.kinds)


def sample_context(kind: TemplateKind) -> dict[str, Any]:
    """Every field of a kind filled with its example, nested as templates read it."""
    context: dict[str, Any] = {}
    for merge_field in MERGE_FIELDS:
        if kind in merge_field.kinds:
            sample = merge_field.example if merge_field.sample is None else deepcopy(merge_field.sample)
            set_path(context, merge_field.name, sample)
    return context


def set_path(context: dict[str, Any], dotted: str, value: Any) -> None:
    head, _, rest = dotted.partition(".")
    if not rest:
        context[head] = value
        return
    set_path(context.setdefault(head, {}), rest, value)


def long_date(value: date) -> str:
    """November 24, 2026: how dates read in every template."""
    return f"{value:%B} {value.day}, {value.year}"


def company_values(company: SettingsView) -> dict[str, str]:
    """The company.* merge fields, from the company's email settings."""
    return {
        "name": company.from_name or company.from_email,
        "email": company.from_email,
        "reply_to": company.reply_to or company.from_email,
    }
