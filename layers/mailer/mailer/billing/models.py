"""Invoices as the business application syncs them (PUT /invoices/{id}).

Amounts arrive as decimal strings ("120.00") and stay strings when stored; every comparison turns
them into `Decimal`, never a float, so "0.009" is below "0.01" and "10.00" above "9.50".
"""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from mailer.settings.models import HeaderText
from mailer.templating.fields import long_date
from mailer.work_orders.models import FIRST_YEAR, LAST_YEAR, ContactMethod, valid_address

InvoiceStatus = Literal["open", "paid", "void"]
RECORD_ID = r"^[A-Za-z0-9._-]{1,64}$"  # invoice and customer ids go into keys: no `#`, no spaces
InvoiceId = Annotated[str, Field(pattern=RECORD_ID)]
CustomerId = Annotated[str, Field(pattern=RECORD_ID)]

_AMOUNT = re.compile(r"^-?\d{1,15}(\.\d{1,4})?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MAX_URL_CHARS = 2000


def _amount_text(value: Any) -> Any:
    # A JSON number would already have passed through a float: only the string keeps the cents exact.
    if not isinstance(value, str) or not _AMOUNT.match(value):
        raise ValueError('must be a decimal amount written as a string with a point, such as "120.00"')
    return value


def _not_negative(value: str) -> str:
    if Decimal(value) < 0:
        raise ValueError("must be zero or more")
    return value


def _currency_code(value: Any) -> Any:
    if not isinstance(value, str) or not _CURRENCY.match(value):
        raise ValueError('must be an ISO 4217 currency code of three capital letters, such as "USD"')
    return value


def _date_text(value: Any) -> Any:
    # Only the calendar date: no timestamp, no time of day that a time zone could move.
    if isinstance(value, date) or (isinstance(value, str) and _ISO_DATE.match(value)):
        return value
    raise ValueError("must be a date written as YYYY-MM-DD")


def _in_service_years(value: date) -> date:
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"must be in the years {FIRST_YEAR} to {LAST_YEAR}")
    return value


def _https_url(value: str) -> str:
    # The link goes into a mail to the customer: only an https address, nothing that hides a scheme.
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or any(c.isspace() or ord(c) < 32 for c in value):
        raise ValueError("must be an https:// address")
    return value


Amount = Annotated[
    str,
    BeforeValidator(_amount_text),
    Field(description='A decimal amount as a string, such as "120.00"; never a JSON number.'),
]
MinimumAmount = Annotated[Amount, AfterValidator(_not_negative)]
CurrencyCode = Annotated[
    str, BeforeValidator(_currency_code), Field(description="ISO 4217 code, such as USD.")
]
InvoiceDate = Annotated[
    date,
    BeforeValidator(_date_text),
    AfterValidator(_in_service_years),
    Field(description=f"YYYY-MM-DD, in the years {FIRST_YEAR} to {LAST_YEAR}."),
]
PaymentUrl = Annotated[str, Field(max_length=MAX_URL_CHARS), AfterValidator(_https_url)]
UploadId = Annotated[str, Field(pattern=r"^[0-9A-Z]{26}$")]


def amount(value: str) -> Decimal:
    """An amount as the model holds it (already checked), as a Decimal to compare or add."""
    return Decimal(value)


class InvoiceCustomer(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    id: CustomerId
    name: Annotated[HeaderText, Field(min_length=1, max_length=200)]
    # Kept as given: a bad address is a reason not to email, not a reason to refuse the sync.
    email: Annotated[HeaderText, Field(max_length=320)] | None = None
    contact_method: ContactMethod = "none"


class InvoiceInput(BaseModel):
    """Body of PUT /invoices/{id}."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    number: Annotated[HeaderText, Field(min_length=1, max_length=64)]
    status: InvoiceStatus = "open"
    customer: InvoiceCustomer
    issue_date: InvoiceDate
    due_date: InvoiceDate
    total: Amount
    amount_due: Amount
    currency: CurrencyCode
    payment_url: PaymentUrl | None = None
    pdf_upload_id: UploadId | None = None

    @field_validator("due_date")
    @classmethod
    def _not_before_issue(cls, value: date, info: ValidationInfo) -> date:
        issued = info.data.get("issue_date")  # absent when the issue date itself was refused
        if isinstance(issued, date) and value < issued:
            raise ValueError(f"must not be before the issue date ({issued.isoformat()})")
        return value


class Invoice(InvoiceInput):
    model_config = ConfigDict(extra="ignore")

    id: InvoiceId
    updated_at: str | None = None
    # Written by the store: 1 for the first write, one more for every write after it.
    version: Annotated[int, Field(ge=0, description="Counts the writes of the invoice.")] = 0


class InvoiceView(Invoice):
    """An invoice as the API answers it: with the number of reminders already sent for it."""

    reminders_sent: Annotated[int, Field(ge=0, description="Invoice reminders sent so far.")] = 0


class InvoiceList(BaseModel):
    items: list[Invoice]


def may_be_emailed(invoice: Invoice) -> bool:
    """Whether the invoice can get a reminder at all: open, and a customer reached by email at a
    valid address. Only such invoices are in the due-date index the daily run reads."""
    customer = invoice.customer
    return invoice.status == "open" and customer.contact_method == "email" and valid_address(customer.email)


def days_overdue(invoice: Invoice, today: date) -> int:
    return max(0, (today - invoice.due_date).days)


def invoice_context(invoice: Invoice, today: date) -> dict[str, Any]:
    """The customer.* and invoice.* merge fields of an invoice reminder (company.* and today are the
    sender's, added where the mail is composed)."""
    customer = invoice.customer
    return {
        "customer": {
            "name": customer.name,
            "first_name": customer.name.split()[0] if customer.name else "",
            "email": customer.email or "",
        },
        "invoice": {
            "number": invoice.number,
            "issue_date": long_date(invoice.issue_date),
            "due_date": long_date(invoice.due_date),
            "total": invoice.total,
            "amount_due": invoice.amount_due,
            "currency": invoice.currency,
            "days_overdue": str(days_overdue(invoice, today)),
            "payment_url": invoice.payment_url or "",
        },
    }
