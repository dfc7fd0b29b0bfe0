"""Invoice reminder rules: what a company says ("7 days after the due date, every 7 days, 4 times at
most"), the three rules every company has before saving any, and the arithmetic of when a rule
reminds an invoice.

The arithmetic is plain date counting: a rule reminds on `due_date + offset_days + k *
repeat_every_days` for k = 0, 1, ... below `max_sends`. Days are days, never months, so a due date
at a month's end or on February 29 moves by exactly the days the rule says.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

from mailer.billing.models import Invoice, MinimumAmount, amount
from mailer.settings.models import HeaderText
from mailer.work_orders.models import valid_address

INVOICE_REMINDER: Final = "invoice_reminder"  # the automation's name in the send ledger and the sent log
MAX_RULES = 10  # a company's rules, the three defaults included
RULE_ID = r"^[a-z0-9_-]{1,40}$"
RuleId = Annotated[str, Field(pattern=RULE_ID)]
OffsetDays = Annotated[
    int, Field(ge=-60, le=365, description="Days from the due date; -3 is three days before.")
]
RepeatDays = Annotated[int, Field(ge=1, le=90, description="Days between sends after the first.")]
MaxSends = Annotated[
    int, Field(ge=1, le=20, description="Sends at most; null: as long as the invoice is open.")
]


class ReminderRuleInput(BaseModel):
    """Body of PUT /invoice-reminders/{rule_id}."""

    model_config = ConfigDict(extra="forbid")

    rule_id: RuleId | None = None
    name: Annotated[HeaderText, Field(min_length=1, max_length=100)]
    active: bool = True
    offset_days: OffsetDays
    repeat_every_days: RepeatDays | None = None
    max_sends: MaxSends | None = None
    min_amount_due: MinimumAmount = "0.01"
    subject: Annotated[str, Field(min_length=1, max_length=998)]
    body_html: Annotated[str, Field(min_length=1, max_length=100_000)]
    body_text: Annotated[str, Field(min_length=1, max_length=100_000)] | None = None
    attach_pdf: bool = True
    # Read-only fields of GET, accepted and ignored so a frontend can send back what it read.
    is_default: bool | None = None
    updated_at: str | None = None
    updated_by: str | None = None


class ReminderRule(BaseModel):
    rule_id: str
    name: str
    active: bool
    offset_days: int
    repeat_every_days: int | None = None
    max_sends: int | None = None
    min_amount_due: str = "0.01"
    subject: str
    body_html: str
    body_text: str | None = None
    attach_pdf: bool = True
    is_default: bool = False
    updated_at: str | None = None
    updated_by: str | None = None


_PAY_LINK = '{% if invoice.payment_url %}<p><a href="{{ invoice.payment_url }}">Pay online</a></p>{% endif %}'
_SIGNATURE = "<p>Thank you,<br>{{ company.name }}</p>"
_AMOUNT = "{{ invoice.amount_due }} {{ invoice.currency }}"

DEFAULT_RULES: dict[str, dict[str, object]] = {
    "before_due": {
        "name": "Before the due date",
        "active": False,
        "offset_days": -3,
        "subject": "Invoice {{ invoice.number }} is due on {{ invoice.due_date }}",
        "body_html": "<p>Hello {{ customer.first_name }},</p>"
        f"<p>Just a note ahead of time: invoice {{{{ invoice.number }}}} for {_AMOUNT} comes due on "
        "{{ invoice.due_date }}.</p>" + _PAY_LINK + _SIGNATURE,
    },
    "on_due": {
        "name": "On the due date",
        "active": False,
        "offset_days": 0,
        "subject": "Invoice {{ invoice.number }} is due today",
        "body_html": "<p>Hello {{ customer.first_name }},</p>"
        f"<p>Invoice {{{{ invoice.number }}}} for {_AMOUNT} is due today, {{{{ invoice.due_date }}}}.</p>"
        + _PAY_LINK
        + _SIGNATURE,
    },
    "overdue": {
        "name": "Overdue",
        "active": False,
        "offset_days": 7,
        "repeat_every_days": 7,
        "max_sends": 4,
        "subject": "Invoice {{ invoice.number }} is past due",
        "body_html": "<p>Hello {{ customer.first_name }},</p>"
        f"<p>Our records show {_AMOUNT} still open on invoice {{{{ invoice.number }}}}, which was due on "
        "{{ invoice.due_date }} ({{ invoice.days_overdue }} days ago).</p>"
        + _PAY_LINK
        + "<p>If your payment "
        "is already on its way, thank you, and there is nothing more to do.</p>" + _SIGNATURE,
    },
}
DEFAULT_RULE_IDS: tuple[str, ...] = tuple(DEFAULT_RULES)


def default_rule(rule_id: str) -> ReminderRule:
    return ReminderRule.model_validate({"rule_id": rule_id, "is_default": True, **DEFAULT_RULES[rule_id]})


def occurrence_on(rule: ReminderRule, invoice: Invoice, day: date) -> int | None:
    """The k (0 for the first send) with `day == due_date + offset_days + k * repeat_every_days` and
    `0 <= k < max_sends`; without a repeat only k = 0. None when the rule does not fall on `day`.
    `max_sends` null with a repeat: no limit but the invoice's own (paid, void, amount due)."""
    since_first = (day - (invoice.due_date + timedelta(days=rule.offset_days))).days
    if since_first < 0:
        return None
    if rule.repeat_every_days is None:
        return 0 if since_first == 0 else None
    k, rest = divmod(since_first, rule.repeat_every_days)
    if rest or (rule.max_sends is not None and k >= rule.max_sends):
        return None
    return k


def why_not_reminded(rule: ReminderRule, invoice: Invoice) -> str | None:
    """None when the rule may remind this invoice on its days; otherwise why not, in a user's words."""
    if invoice.status != "open":
        return f"the invoice is {invoice.status}"
    if amount(invoice.amount_due) < amount(rule.min_amount_due):
        return f"the amount due is below the rule's minimum of {rule.min_amount_due} {invoice.currency}"
    if invoice.customer.contact_method != "email":
        return f"the customer's automated contact method is {invoice.customer.contact_method}, not email"
    if not valid_address(invoice.customer.email):
        return "the customer has no valid email address"
    return None


def is_due(rule: ReminderRule, invoice: Invoice, day: date) -> bool:
    """Whether the active rule reminds the invoice on `day`: it falls on that day, the invoice is
    open, its amount due reaches the rule's minimum, and the customer is emailed at a valid address."""
    return (
        rule.active
        and occurrence_on(rule, invoice, day) is not None
        and why_not_reminded(rule, invoice) is None
    )


def ledger_occurrence(rule_id: str, k: int) -> str:
    """The ledger occurrence of a rule's k-th send of an invoice (`overdue:2`): each is sent once, ever."""
    return f"{rule_id}:{k}"


def rule_of(occurrence: str) -> str:
    """The rule of a ledger occurrence (`overdue:2` -> `overdue`)."""
    return occurrence.rsplit(":", 1)[0]
