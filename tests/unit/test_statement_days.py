"""Statements without AWS: the days a schedule falls on, what a schedule may say, the totals per
currency, the merge fields of a statement, why a queued statement is not sent, and the default
wording as the customer reads it in HTML and in text."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from mailer.billing.models import Invoice
from mailer.billing.statement_models import (
    Statement,
    StatementSchedule,
    StatementScheduleInput,
    default_schedule,
    is_statement_day,
    statement_context,
    statement_document,
    why_not_sent,
)
from mailer.billing.statements import statement_wording
from mailer.templating.engine import check_template, render
from mailer.templating.fields import BY_NAME, sample_context

DAY = date(2026, 12, 1)  # a Tuesday


def schedule(**changes: Any) -> StatementSchedule:
    return default_schedule().model_copy(update={"active": True, **changes})


def invoice(invoice_id: str, due: date, amount_due: str = "120.00", **changes: Any) -> Invoice:
    customer = {"id": "C-17", "name": "Dana Whitfield", "email": "dana@customer.example"}
    customer["contact_method"] = "email"
    return Invoice.model_validate(
        {
            "id": invoice_id,
            "number": invoice_id,
            "customer": customer | changes.pop("customer", {}),
            "issue_date": "2026-01-01",
            "due_date": due,
            "total": amount_due,
            "amount_due": amount_due,
            "currency": "USD",
        }
        | changes
    )


def statement(*invoices: Invoice, day: date = DAY) -> Statement:
    made = Statement.of("C-17", list(invoices), day)
    assert made is not None
    return made


@pytest.mark.parametrize(
    ("frequency", "day", "falls_on", "not_on"),
    [
        ("monthly", 1, [date(2026, 12, 1), date(2027, 1, 1), date(2028, 2, 1)], [date(2026, 12, 2)]),
        ("monthly", 28, [date(2027, 2, 28), date(2028, 2, 28), date(2026, 12, 28)], [date(2028, 2, 29)]),
        ("weekly", 2, [DAY, DAY + timedelta(days=7), DAY - timedelta(days=7)], [DAY + timedelta(days=1)]),
        ("weekly", 7, [date(2026, 12, 6)], [date(2026, 12, 5), date(2026, 12, 7)]),
    ],
)
def test_a_schedule_falls_on_its_day_of_the_month_or_its_iso_weekday(frequency, day, falls_on, not_on):
    saved = schedule(frequency=frequency, day=day)

    assert all(is_statement_day(saved, d) for d in falls_on)
    assert not any(is_statement_day(saved, d) for d in not_on)


def test_a_weekly_schedule_falls_once_a_week_and_a_monthly_once_a_month():
    days = [date(2026, 1, 1) + timedelta(days=n) for n in range(365)]

    assert sum(is_statement_day(schedule(frequency="weekly", day=3), d) for d in days) == 52
    assert sum(is_statement_day(schedule(frequency="monthly", day=28), d) for d in days) == 12


def schedule_input(**changes: Any) -> dict[str, Any]:
    return {"frequency": "monthly", "day": 1, "subject": "s", "body_html": "b"} | changes


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"frequency": "weekly", "day": 8}, "day"),
        ({"frequency": "monthly", "day": 29}, "day"),
        ({"frequency": "monthly", "day": 0}, "day"),
        ({"frequency": "yearly"}, "frequency"),
        ({"min_balance": "1,00"}, "min_balance"),
        ({"min_balance": 1.5}, "min_balance"),
        ({"min_balance": "-0.01"}, "min_balance"),
    ],
)
def test_a_schedule_refuses_days_and_amounts_it_cannot_mean(changes, field):
    with pytest.raises(ValidationError) as refused:
        StatementScheduleInput.model_validate(schedule_input(**changes))

    assert [e["loc"] for e in refused.value.errors()] == [(field,)]


def test_weekly_days_up_to_seven_and_monthly_days_up_to_28_are_taken():
    assert StatementScheduleInput.model_validate(schedule_input(frequency="weekly", day=7)).day == 7
    assert StatementScheduleInput.model_validate(schedule_input(frequency="monthly", day=28)).day == 28


def test_the_statement_lists_invoices_oldest_due_first_with_days_overdue_to_its_date():
    made = statement(
        invoice("INV-2", DAY + timedelta(days=10), "30.00"),
        invoice("INV-1", DAY - timedelta(days=45), "120.00"),
    )

    context = statement_context(made)

    assert context["statement"] == {
        "date": "December 1, 2026",
        "total_due": "150.00 USD",
        "invoices": [
            {
                "number": "INV-1",
                "due_date": "October 17, 2026",
                "amount_due": "120.00 USD",
                "currency": "USD",
                "days_overdue": "45",
            },
            {
                "number": "INV-2",
                "due_date": "December 11, 2026",
                "amount_due": "30.00 USD",
                "currency": "USD",
                "days_overdue": "0",
            },
        ],
    }
    assert context["customer"] == {
        "name": "Dana Whitfield",
        "first_name": "Dana",
        "email": "dana@customer.example",
    }


def test_amounts_add_up_exactly_and_per_currency():
    cents = [invoice(f"INV-{k}", DAY, "0.10") for k in range(3)]  # 0.1 + 0.1 + 0.1 as a float is not 0.3
    mixed = statement(*cents, invoice("INV-E", DAY, "45.5", currency="EUR"), invoice("INV-C", DAY, "-5.00"))

    assert statement(*cents).total_due == "0.30 USD"
    assert mixed.totals == {"EUR": Decimal("45.5"), "USD": Decimal("-4.70")}
    assert mixed.total_due == "45.5 EUR, -4.70 USD"
    document = statement_document(mixed)
    assert (document["amount"], document["currency"]) == (None, None)
    assert document["totals"] == {"EUR": "45.5", "USD": "-4.70"}
    assert statement_document(statement(*cents))["amount"] == "0.30"


def test_the_customer_is_the_one_the_latest_synced_invoice_names():
    older = invoice(
        "INV-1", DAY, updated_at="2026-11-01T00:00:00Z", customer={"email": "old@customer.example"}
    )
    newer = invoice(
        "INV-2", DAY, updated_at="2026-11-20T00:00:00Z", customer={"email": "new@customer.example"}
    )

    assert statement(older, newer).customer.email == "new@customer.example"
    assert statement(newer, older).customer.email == "new@customer.example"


@pytest.mark.parametrize(
    ("saved", "invoices", "reason"),
    [
        (schedule(active=False), [invoice("INV-1", DAY)], "statement schedule inactive"),
        (schedule(), [], "the customer has no open invoices"),
        (schedule(day=2), [invoice("INV-1", DAY)], "no longer a statement day"),
        (schedule(min_balance="120.01"), [invoice("INV-1", DAY)], "below the schedule's minimum balance"),
        (schedule(), [invoice("INV-1", DAY, customer={"contact_method": "text"})], "contact method is text"),
        (schedule(), [invoice("INV-1", DAY, customer={"email": "nobody"})], "no valid email address"),
    ],
)
def test_why_a_queued_statement_is_not_sent(saved, invoices, reason):
    assert reason in (why_not_sent(saved, Statement.of("C-17", invoices, DAY)) or "")


def test_a_statement_at_exactly_the_minimum_balance_is_sent():
    assert why_not_sent(schedule(min_balance="120.00"), statement(invoice("INV-1", DAY))) is None


def test_the_default_wording_passes_the_save_time_check():
    default = default_schedule()

    check_template(default.subject, "subject", "statement")
    check_template(default.body_html, "body_html", "statement")
    assert default.active is False and default.is_default is True


def test_the_default_wording_reads_as_a_table_in_html_and_a_row_a_line_in_text():
    made = statement(invoice("INV-1", DAY - timedelta(days=3)), invoice("INV-2", DAY, "80.00"))

    rendered = statement_wording(default_schedule(), made, None, DAY)

    assert rendered.subject == "Your statement from Acme Plumbing, December 1, 2026"  # sample company
    assert "<tr><td>INV-1</td><td>November 28, 2026</td>" in rendered.html
    assert rendered.text == (
        "Hello Dana,\n\n"
        "Here is your statement of December 1, 2026. These invoices are open, 200.00 USD in all:\n\n"
        "Invoice  Due date  Amount due  Days overdue\n\n"
        "INV-1  November 28, 2026  120.00 USD  3\n\n"
        "INV-2  December 1, 2026  80.00 USD  0\n\n"
        "Total due  200.00 USD\n\n"
        "If your payment is already on its way, thank you, and there is nothing more to do.\n\n"
        "Thank you,\nAcme Plumbing\n"
    )


def test_customer_data_in_a_statement_is_escaped_in_html():
    made = statement(invoice("INV-1", DAY, number="<b>INV-1</b>", customer={"name": "O'Brien & <Sons>"}))

    html = render(
        "{{ customer.name }}{% for i in statement.invoices %}{{ i.number }}{% endfor %}",
        statement_context(made),
        html=True,
    )

    assert html == "O&#39;Brien &amp; &lt;Sons&gt;&lt;b&gt;INV-1&lt;/b&gt;"


def test_statement_wording_may_loop_over_the_invoices_but_not_use_invoice_or_work_order_fields():
    check_template(
        "{% for i in statement.invoices %}{{ i.number }} {{ i.days_overdue }}{% endfor %}",
        "body_html",
        "statement",
    )

    for source in ("{{ invoice.number }}", "{{ work_order.number }}", "{{ statement.nope }}"):
        with pytest.raises(Exception, match="unknown merge field"):
            check_template(source, "body_html", "statement")


def test_the_sample_statement_is_a_list_to_loop_over_and_each_sample_is_a_fresh_copy():
    first = sample_context("statement")
    first["statement"]["invoices"].append({"number": "changed"})

    assert [i["number"] for i in sample_context("statement")["statement"]["invoices"]] == [
        "INV-1001",
        "INV-1002",
    ]
    assert BY_NAME["statement.invoices"].public() == {
        "number": 92,
        "name": "statement.invoices",
        "description": BY_NAME["statement.invoices"].description,
        "example": BY_NAME["statement.invoices"].example,
    }
