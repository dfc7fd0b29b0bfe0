"""Customers' statements: the schedule a company saves (monthly on a day of the month, or weekly on a
weekday), its default wording, the days it falls on, and a statement itself: a customer's open
invoices on a day, with their total, as merge fields and as the sent log names it.

Currency: a statement lists every open invoice of the customer, each with its own currency, and
totals them per currency. With one currency (the usual case) `statement.total_due` is one amount
("360.00 USD"); with several it is one total per currency ("360.00 USD, 45.00 EUR"), never a sum
of amounts in different currencies. `min_balance` has no currency: a customer is sent a statement
when the open total in at least one of its currencies reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from mailer.billing.models import Invoice, InvoiceCustomer, MinimumAmount, amount, days_overdue
from mailer.templating.fields import long_date
from mailer.work_orders.models import valid_address

STATEMENT: Final = "statement"  # the automation's name in the send ledger and the sent log
Frequency = Literal["monthly", "weekly"]
LAST_MONTH_DAY = 28  # every month has it: a statement day never falls out of a short month
ScheduleDay = Annotated[
    int,
    Field(
        ge=1,
        le=LAST_MONTH_DAY,
        description="monthly: the day of the month, 1-28; weekly: the ISO weekday, 1 (Monday) to 7 (Sunday).",
    ),
]


class StatementScheduleInput(BaseModel):
    """Body of PUT /statements/schedule."""

    model_config = ConfigDict(extra="forbid")

    active: bool = True
    frequency: Frequency
    day: ScheduleDay
    min_balance: MinimumAmount = "0.01"
    subject: Annotated[str, Field(min_length=1, max_length=998)]
    body_html: Annotated[str, Field(min_length=1, max_length=100_000)]
    attach_invoices: bool = False
    # Read-only fields of GET, accepted and ignored so a frontend can send back what it read.
    is_default: bool | None = None
    updated_at: str | None = None
    updated_by: str | None = None

    @field_validator("day")
    @classmethod
    def _day_of_the_frequency(cls, value: int, info: ValidationInfo) -> int:
        frequency = info.data.get("frequency")  # absent when the frequency itself was refused
        if frequency == "weekly" and value > 7:
            raise ValueError("must be an ISO weekday from 1 (Monday) to 7 (Sunday) for a weekly schedule")
        return value


class StatementSchedule(BaseModel):
    active: bool
    frequency: Frequency
    day: int
    min_balance: str = "0.01"
    subject: str
    body_html: str
    attach_invoices: bool = False
    is_default: bool = False
    updated_at: str | None = None
    updated_by: str | None = None


_ROWS = (
    "{% for i in statement.invoices %}<tr><td>{{ i.number }}</td><td>{{ i.due_date }}</td>"
    '<td align="right">{{ i.amount_due }}</td><td align="right">{{ i.days_overdue }}</td></tr>'
    "{% endfor %}"
)
DEFAULT_SCHEDULE: dict[str, object] = {
    "active": False,
    "frequency": "monthly",
    "day": 1,
    "min_balance": "0.01",
    "subject": "Your statement from {{ company.name }}, {{ statement.date }}",
    "body_html": "<p>Hello {{ customer.first_name }},</p>"
    "<p>Here is your statement of {{ statement.date }}. These invoices are open, "
    "{{ statement.total_due }} in all:</p>"
    '<table cellpadding="6" cellspacing="0" border="1" style="border-collapse:collapse">'
    '<tr><th align="left">Invoice</th><th align="left">Due date</th><th align="right">Amount due</th>'
    '<th align="right">Days overdue</th></tr>'
    + _ROWS
    + '<tr><th align="left" colspan="2">Total due</th><th align="right">{{ statement.total_due }}</th>'
    "<th></th></tr></table>"
    "<p>If your payment is already on its way, thank you, and there is nothing more to do.</p>"
    "<p>Thank you,<br>{{ company.name }}</p>",
    "attach_invoices": False,
}


def default_schedule() -> StatementSchedule:
    return StatementSchedule.model_validate(DEFAULT_SCHEDULE | {"is_default": True})


def is_statement_day(schedule: StatementSchedule, day: date) -> bool:
    """Whether the schedule falls on `day`: its day of the month, or its ISO weekday (whether it is
    active is the caller's to check)."""
    if schedule.frequency == "weekly":
        return day.isoweekday() == schedule.day
    return day.day == schedule.day


def statement_number(customer_id: str, day: date) -> str:
    """How a statement is named in the sent log: `ST-C-17-2026-12-01`, one per customer and date."""
    return f"ST-{customer_id}-{day.isoformat()}"


def totals_of(invoices: list[Invoice] | tuple[Invoice, ...]) -> dict[str, Decimal]:
    """The amounts due added up per currency, by currency code."""
    found: dict[str, Decimal] = {}
    for invoice in invoices:
        found[invoice.currency] = found.get(invoice.currency, Decimal(0)) + amount(invoice.amount_due)
    return dict(sorted(found.items()))


def reaches(totals: dict[str, Decimal], min_balance: str) -> bool:
    """Whether an open total in some currency is at least `min_balance`."""
    return any(total >= amount(min_balance) for total in totals.values())


def current_customer(invoices: list[Invoice]) -> InvoiceCustomer:
    """The customer as the most recently synced of their invoices names them: the business
    application sends the customer with every invoice, so the latest sync says how to reach them."""
    return max(invoices, key=lambda i: (i.updated_at or "", i.version)).customer


@dataclass(frozen=True)
class Statement:
    """A customer's open invoices on the statement's day, oldest due date first."""

    customer_id: str
    customer: InvoiceCustomer
    invoices: tuple[Invoice, ...]
    day: date

    @classmethod
    def of(cls, customer_id: str, open_invoices: list[Invoice], day: date) -> Statement | None:
        """The statement of these open invoices; None without any."""
        if not open_invoices:
            return None
        ordered = sorted(open_invoices, key=lambda i: (i.due_date, i.number, i.id))
        return cls(customer_id, current_customer(open_invoices), tuple(ordered), day)

    @property
    def number(self) -> str:
        return statement_number(self.customer_id, self.day)

    @property
    def totals(self) -> dict[str, Decimal]:
        return totals_of(self.invoices)

    @property
    def total_due(self) -> str:
        return ", ".join(f"{total} {currency}" for currency, total in self.totals.items())


def statement_context(statement: Statement) -> dict[str, Any]:
    """The customer.* and statement.* merge fields (company.* and today are the sender's, added where
    the mail is composed). Days overdue count to the statement's date."""
    customer = statement.customer
    return {
        "customer": {
            "name": customer.name,
            "first_name": customer.name.split()[0] if customer.name else "",
            "email": customer.email or "",
        },
        "statement": {
            "date": long_date(statement.day),
            "total_due": statement.total_due,
            "invoices": [
                {
                    "number": invoice.number,
                    "due_date": long_date(invoice.due_date),
                    "amount_due": f"{invoice.amount_due} {invoice.currency}",
                    "currency": invoice.currency,
                    "days_overdue": str(days_overdue(invoice, statement.day)),
                }
                for invoice in statement.invoices
            ],
        },
    }


def why_not_sent(schedule: StatementSchedule, statement: Statement | None) -> str | None:
    """None when the scheduled statement may go; otherwise why not, in a user's words."""
    if not schedule.active:
        return "statement schedule inactive"
    if statement is None:
        return "the customer has no open invoices"
    if not is_statement_day(schedule, statement.day):
        return "no longer a statement day"  # the schedule changed since the run
    customer = statement.customer
    if customer.contact_method != "email":
        return f"the customer's automated contact method is {customer.contact_method}, not email"
    if not valid_address(customer.email):
        return "the customer has no valid email address"
    if not reaches(statement.totals, schedule.min_balance):
        return f"the open total is below the schedule's minimum balance of {schedule.min_balance}"
    return None


def statement_document(statement: Statement) -> dict[str, Any]:
    """The sent log's `document` of a statement, as a reminder's names its invoice, so that
    GET /emails?document_type=statement&document_number=ST-... finds it. `amount` and `currency`
    are the total when the invoices share one currency (null otherwise); `totals` always has the
    total of each currency."""
    totals = statement.totals
    single = next(iter(totals.items())) if len(totals) == 1 else None
    return {
        "type": STATEMENT,
        "number": statement.number,
        "customer_name": statement.customer.name,
        "amount": str(single[1]) if single else None,
        "currency": single[0] if single else None,
        "totals": {currency: str(total) for currency, total in totals.items()},
        "statement_date": statement.day.isoformat(),
        "customer_id": statement.customer_id,
        "invoice_count": len(statement.invoices),
    }
