"""Invoice reminder rules with no AWS: on which days a rule falls (month ends, leap days, repeats and
their limit), which invoices it may remind (status, amount due as decimals, contact method), the
defaults, the invoice merge fields, and the invoice as the sync takes it."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from mailer.billing.models import Invoice, InvoiceInput, invoice_context, may_be_emailed
from mailer.billing.rules import (
    DEFAULT_RULE_IDS,
    ReminderRule,
    default_rule,
    is_due,
    ledger_occurrence,
    occurrence_on,
    why_not_reminded,
)
from mailer.errors import InvalidInput
from mailer.templating.engine import check_template, expand_numbers, render, render_subject
from mailer.templating.fields import BY_NAME, MERGE_FIELDS


def invoice(due: date, **changes: Any) -> Invoice:
    """An open invoice of 120.00 USD issued 30 days before `due`, for a customer who wants email."""
    customer = {
        "id": "C-17",
        "name": "Dana Whitfield",
        "email": "dana@example.com",
        "contact_method": "email",
    }
    body = {
        "id": "INV-1001",
        "number": "INV-1001",
        "status": "open",
        "customer": customer | changes.pop("customer", {}),
        "issue_date": (due - timedelta(days=30)).isoformat(),
        "due_date": due.isoformat(),
        "total": "120.00",
        "amount_due": "120.00",
        "currency": "USD",
    }
    return Invoice.model_validate(body | changes)


def rule(
    offset: int, repeat: int | None = None, max_sends: int | None = None, **changes: Any
) -> ReminderRule:
    return ReminderRule.model_validate(
        {
            "rule_id": "r",
            "name": "R",
            "active": True,
            "offset_days": offset,
            "repeat_every_days": repeat,
            "max_sends": max_sends,
            "subject": "s",
            "body_html": "b",
        }
        | changes
    )


def days_reminded(a_rule: ReminderRule, an_invoice: Invoice, first: date, last: date) -> dict[date, int]:
    """Every day from `first` to `last` on which the rule falls, with its k."""
    found = {}
    day = first
    while day <= last:
        k = occurrence_on(a_rule, an_invoice, day)
        if k is not None:
            found[day] = k
        day += timedelta(days=1)
    return found


# --- the days a rule falls on ---------------------------------------------------------------------


def test_thirty_days_after_january_31_of_a_leap_year_is_march_1():
    due = invoice(date(2028, 1, 31))

    assert days_reminded(rule(30), due, date(2028, 1, 1), date(2028, 4, 30)) == {date(2028, 3, 1): 0}


def test_thirty_days_after_january_31_of_a_common_year_is_march_2():
    due = invoice(date(2027, 1, 31))

    assert days_reminded(rule(30), due, date(2027, 1, 1), date(2027, 4, 30)) == {date(2027, 3, 2): 0}


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(-3, date(2028, 2, 26)), (0, date(2028, 2, 29)), (1, date(2028, 3, 1)), (-29, date(2028, 1, 31))],
)
def test_a_leap_day_due_date_moves_by_exactly_the_offset(offset, expected):
    due = invoice(date(2028, 2, 29))

    assert days_reminded(rule(offset), due, date(2027, 12, 1), date(2028, 6, 30)) == {expected: 0}


def test_an_overdue_rule_on_a_leap_day_due_date_repeats_weekly_four_times():
    due = invoice(date(2028, 2, 29))

    reminded = days_reminded(rule(7, 7, 4), due, date(2028, 1, 1), date(2028, 12, 31))

    assert reminded == {
        date(2028, 3, 7): 0,
        date(2028, 3, 14): 1,
        date(2028, 3, 21): 2,
        date(2028, 3, 28): 3,
    }


def test_repeats_cross_a_year_end():
    due = invoice(date(2026, 12, 31))

    reminded = days_reminded(rule(7, 10, 3), due, date(2026, 12, 1), date(2027, 3, 31))

    assert reminded == {date(2027, 1, 7): 0, date(2027, 1, 17): 1, date(2027, 1, 27): 2}


def test_the_last_send_is_k_max_sends_minus_one_and_nothing_after():
    due = invoice(date(2026, 12, 1))
    first = date(2026, 12, 8)
    weekly_twice = rule(7, 7, 2)

    assert occurrence_on(weekly_twice, due, first - timedelta(days=1)) is None
    assert occurrence_on(weekly_twice, due, first) == 0
    assert occurrence_on(weekly_twice, due, first + timedelta(days=3)) is None
    assert occurrence_on(weekly_twice, due, first + timedelta(days=7)) == 1
    assert occurrence_on(weekly_twice, due, first + timedelta(days=14)) is None


def test_one_send_at_most_is_the_first_day_only():
    due = invoice(date(2026, 12, 1))

    reminded = days_reminded(rule(0, 1, 1), due, date(2026, 11, 1), date(2027, 1, 31))

    assert reminded == {date(2026, 12, 1): 0}


def test_without_a_repeat_only_the_first_day_counts_whatever_max_sends_says():
    due = invoice(date(2026, 12, 1))

    reminded = days_reminded(rule(7, None, 5), due, date(2026, 11, 1), date(2027, 3, 31))

    assert reminded == {date(2026, 12, 8): 0}


def test_a_repeat_without_max_sends_keeps_going_while_the_invoice_is_open():
    due = invoice(date(2026, 12, 1))

    assert occurrence_on(rule(7, 7), due, date(2026, 12, 8) + timedelta(days=7 * 50)) == 50


def test_each_send_has_its_own_ledger_occurrence():
    assert [ledger_occurrence("overdue", k) for k in range(3)] == ["overdue:0", "overdue:1", "overdue:2"]


# --- which invoices a rule reminds -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount_due", "minimum", "reminded"),
    [
        ("0.009", "0.01", False),
        ("0.01", "0.01", True),
        ("0.010", "0.01", True),
        ("10.00", "9.50", True),  # as text, "10.00" sorts before "9.50"
        ("9.99", "10.00", False),
        ("0.00", "0.01", False),
        ("0.00", "0", True),
        ("-5.00", "0", False),
    ],
)
def test_the_amount_due_is_compared_with_the_minimum_as_decimals(amount_due, minimum, reminded):
    due = invoice(date(2026, 12, 1), amount_due=amount_due)

    assert is_due(rule(0, min_amount_due=minimum), due, date(2026, 12, 1)) is reminded


@pytest.mark.parametrize("status", ["paid", "void"])
def test_a_paid_or_void_invoice_gets_nothing_more(status):
    due = invoice(date(2026, 12, 1), status=status)

    assert not is_due(rule(0), due, date(2026, 12, 1))
    assert why_not_reminded(rule(0), due) == f"the invoice is {status}"
    assert not may_be_emailed(due)


@pytest.mark.parametrize(
    ("customer", "reason"),
    [
        ({"contact_method": "text"}, "the customer's automated contact method is text, not email"),
        ({"contact_method": "none"}, "the customer's automated contact method is none, not email"),
        ({"email": None}, "the customer has no valid email address"),
        ({"email": "dana@@example"}, "the customer has no valid email address"),
    ],
)
def test_only_customers_emailed_at_a_valid_address_are_reminded(customer, reason):
    due = invoice(date(2026, 12, 1), customer=customer)

    assert not is_due(rule(0), due, date(2026, 12, 1))
    assert why_not_reminded(rule(0), due) == reason
    assert not may_be_emailed(due)


def test_an_inactive_rule_reminds_nobody():
    due = invoice(date(2026, 12, 1))

    assert is_due(rule(0), due, date(2026, 12, 1))
    assert not is_due(rule(0, active=False), due, date(2026, 12, 1))


def test_a_rule_on_another_day_is_not_due_even_when_everything_else_holds():
    due = invoice(date(2026, 12, 1))

    assert why_not_reminded(rule(0), due) is None
    assert not is_due(rule(0), due, date(2026, 12, 2))


# --- the defaults and their wording ----------------------------------------------------------------


def test_three_inactive_defaults_before_due_on_due_and_overdue():
    defaults = [default_rule(r) for r in DEFAULT_RULE_IDS]

    assert [(r.rule_id, r.active, r.is_default) for r in defaults] == [
        ("before_due", False, True),
        ("on_due", False, True),
        ("overdue", False, True),
    ]
    assert [(r.offset_days, r.repeat_every_days, r.max_sends) for r in defaults] == [
        (-3, None, None),
        (0, None, None),
        (7, 7, 4),
    ]


@pytest.mark.parametrize("rule_id", DEFAULT_RULE_IDS)
def test_default_wording_passes_the_save_time_check_and_fills_in(rule_id):
    wording = default_rule(rule_id)
    due = invoice(date(2026, 12, 1), payment_url="https://pay.example/i/1001")
    context = invoice_context(due, date(2026, 12, 15)) | {"company": {"name": "Acme Plumbing"}}

    check_template(wording.subject, "subject", "invoice")
    check_template(wording.body_html, "body_html", "invoice")
    html = render(wording.body_html, context, html=True)

    assert "INV-1001" in render_subject(wording.subject, context)
    assert "Dana" in html and "120.00 USD" in html and "Acme Plumbing" in html
    assert '<a href="https://pay.example/i/1001">' in html


def test_the_overdue_default_says_how_many_days_late():
    context = invoice_context(invoice(date(2026, 12, 1)), date(2026, 12, 15)) | {"company": {"name": "Acme"}}

    assert "(14 days ago)" in render(default_rule("overdue").body_html, context, html=True)


def test_invoice_merge_fields_are_numbered_after_the_others():
    invoice_fields = [f for f in MERGE_FIELDS if f.name.startswith("invoice.")]
    # The statement fields came after the invoice ones, and are numbered after them in turn.
    others = [f for f in MERGE_FIELDS if not f.name.startswith(("invoice.", "statement."))]

    assert min(f.number for f in invoice_fields) > max(f.number for f in others)
    assert {f.name for f in invoice_fields} >= {
        "invoice.number",
        "invoice.due_date",
        "invoice.amount_due",
        "invoice.currency",
        "invoice.payment_url",
    }
    number = BY_NAME["invoice.amount_due"].number
    assert expand_numbers(f"[{number}]") == "{{ invoice.amount_due }}"


def test_invoice_wording_may_not_use_work_order_fields_nor_work_orders_invoice_fields():
    check_template("{{ customer.first_name }} {{ company.name }} {{ today }}", "body_html", "invoice")

    with pytest.raises(InvalidInput) as refused:
        check_template("{{ work_order.number }}", "body_html", "invoice")
    assert refused.value.errors[0].field == "body_html"
    with pytest.raises(InvalidInput):
        check_template("{{ invoice.number }}", "body_html", "automation")


# --- the invoice as the sync takes it ---------------------------------------------------------------


def sync_body(**changes: Any) -> dict[str, Any]:
    return (
        invoice(date(2026, 12, 1)).model_dump(mode="json", exclude={"id", "version", "updated_at"}) | changes
    )


def refused_fields(body: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as refused:
        InvoiceInput.model_validate(body)
    return [".".join(map(str, e["loc"])) for e in refused.value.errors()]


@pytest.mark.parametrize("value", [120.0, 120, "12,00", "1e3", "120.", " ", "120.00000", "$120.00"])
def test_an_amount_must_be_a_decimal_string(value):
    assert refused_fields(sync_body(total=value)) == ["total"]


def test_the_due_date_may_not_come_before_the_issue_date():
    assert refused_fields(sync_body(issue_date="2026-12-02", due_date="2026-12-01")) == ["due_date"]
    assert InvoiceInput.model_validate(sync_body(issue_date="2026-12-01", due_date="2026-12-01"))


@pytest.mark.parametrize(
    "value", ["1999-12-31", "2101-01-01", "2026-12-01T00:00:00Z", "2026-02-30", 20261201]
)
def test_dates_are_calendar_dates_in_the_service_years(value):
    assert refused_fields(sync_body(due_date=value, issue_date="2026-11-01")) == ["due_date"]
