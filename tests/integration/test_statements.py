"""Customers' statements through the API, the outbox queue and the worker, with a real SMTP server on
loopback: the schedule (its default, its checks, who may change it), which customers a run sends a
statement on which days, each (customer, statement date) once ever, a payment recorded after the run
taken off the statement, a statement sent now, and the previews of statements and invoice rules."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from local.events import USER, FakeContext, Identity
from tests.support.factories import TIMEZONE, invoice, pdf_file, smtp_settings
from tests.support.steps import (
    run_statements,
    save_settings,
    save_statement_schedule,
    sync_invoice,
    upload_pdf,
)

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "billing@acme.example"
CUSTOMER = "dana@customer.example"
FIRST = date(2026, 12, 1)  # a Tuesday, the first of the month
OTHER_TENANT = Identity(tenant_id="other-co", user_id="admin-2", email="admin@other.example")
LEE = {"id": "C-18", "name": "Lee Park", "email": "lee@customer.example", "contact_method": "email"}


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


@pytest.fixture
def company(api, trust_local_ca, mail_server) -> dict[str, Any]:
    return save_settings(api, smtp_settings(ACCOUNT, PASSWORD, port=mail_server.port, timezone=TIMEZONE))


def received(mail_server, to: str = CUSTOMER) -> list[Any]:
    """The delivered messages to `to`, parsed."""
    return [m.parsed() for m in mail_server.messages if m.parsed()["To"] == to]


def bodies(message) -> tuple[str, str]:
    """The HTML and the text version as the customer reads them (lines end in LF here)."""
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    return message.get_body(("html",)).get_content(), text


def schedule_body(**changes: Any) -> dict[str, Any]:
    return {
        "active": True,
        "frequency": "monthly",
        "day": 1,
        "min_balance": "0.01",
        "subject": "Statement {{ statement.date }}",
        "body_html": "<p>{{ statement.total_due }}</p>",
        "attach_invoices": False,
    } | changes


def today_there() -> date:
    return datetime.now(ZoneInfo(TIMEZONE)).date()


# --- the schedule ---------------------------------------------------------------------------------


def test_the_default_schedule_exists_before_any_save_and_is_inactive(api):
    status, schedule, _ = api.call("GET", "/statements/schedule")

    assert status == 200, schedule
    assert (schedule["active"], schedule["frequency"], schedule["day"]) == (False, "monthly", 1)
    assert schedule["min_balance"] == "0.01" and schedule["is_default"] is True
    assert "{% for i in statement.invoices %}" in schedule["body_html"]
    assert run_statements(api, FIRST) == 0


def test_a_saved_schedule_is_read_back(api):
    saved = save_statement_schedule(api, frequency="weekly", day=5, min_balance="25.00")

    status, read, _ = api.call("GET", "/statements/schedule")

    assert status == 200 and read == saved
    assert (read["active"], read["frequency"], read["day"], read["min_balance"]) == (
        True,
        "weekly",
        5,
        "25.00",
    )
    assert read["is_default"] is False and read["updated_by"] == "admin@demo.test"


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"frequency": "daily"}, "frequency", ""),
        ({"frequency": "weekly", "day": 8}, "day", "ISO weekday"),
        ({"frequency": "monthly", "day": 29}, "day", "28"),
        ({"day": 0}, "day", ""),
        ({"min_balance": "12,50"}, "min_balance", "decimal amount"),
        ({"min_balance": 5}, "min_balance", "decimal amount"),
        ({"min_balance": "-1.00"}, "min_balance", "zero or more"),
        ({"body_html": "<p>{{ statement.totl_due }}</p>"}, "body_html", "{{ statement.totl_due }} at line 1"),
        ({"body_html": "<p>ok</p>\n{{ invoice.number }}"}, "body_html", "{{ invoice.number }} at line 2"),
        ({"subject": "Statement {% for i in %}"}, "subject", "syntax error at line 1"),
    ],
)
def test_a_bad_schedule_is_a_422_naming_the_field(api, changes, field, words):
    status, problem, _ = api.call("PUT", "/statements/schedule", schedule_body(**changes))

    assert status == 422, problem
    assert problem["errors"][0]["field"] == field and words in problem["errors"][0]["message"], problem
    _, schedule, _ = api.call("GET", "/statements/schedule")
    assert schedule["is_default"] is True  # nothing was saved


def test_only_an_administrator_changes_the_schedule_or_runs_the_statements(api, company):
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))

    changed, problem, _ = api.call("PUT", "/statements/schedule", schedule_body(), identity=USER)
    ran, ran_problem, _ = api.call("POST", "/statements/run", {"date": FIRST.isoformat()}, identity=USER)

    assert changed == 403, problem
    assert ran == 403, ran_problem
    status, schedule, _ = api.call("GET", "/statements/schedule", identity=USER)  # reading is for all
    assert status == 200 and schedule["is_default"] is True


# --- the scheduled run ----------------------------------------------------------------------------


def test_a_statement_lists_every_open_invoice_of_the_customer_with_the_total(
    api, company, mail_server, outbox
):
    save_statement_schedule(api)  # the default wording, monthly on the 1st
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST - timedelta(days=60)))
    sync_invoice(api, "INV-1002", invoice("INV-1002", FIRST + timedelta(days=14), amount_due="80.50"))
    sync_invoice(api, "INV-1003", invoice("INV-1003", FIRST, status="paid", amount_due="0.00"))
    sync_invoice(api, "INV-1004", invoice("INV-1004", FIRST, customer=LEE, amount_due="45.00"))

    assert run_statements(api, FIRST) == 2  # Dana and Lee
    assert outbox.drain() == []

    [message] = received(mail_server)
    assert message["Subject"] == "Your statement from Acme Plumbing, December 1, 2026"
    assert message["From"] == "Acme Plumbing <billing@acme.example>"
    assert message["Auto-Submitted"] == "auto-generated"
    html, text = bodies(message)
    assert "<td>INV-1001</td><td>October 2, 2026</td>" in html
    assert '<td align="right">120.00 USD</td><td align="right">60</td>' in html  # 60 days overdue
    assert "<td>INV-1002</td><td>December 15, 2026</td>" in html
    assert '<td align="right">80.50 USD</td><td align="right">0</td>' in html  # not yet due
    assert "INV-1003" not in html and "INV-1004" not in html  # paid; another customer's
    assert '<th align="right">200.50 USD</th>' in html  # the total row
    assert "Hello Dana," in text and "<td>" not in text
    assert "INV-1001  October 2, 2026  120.00 USD  60\n" in text
    assert "INV-1002  December 15, 2026  80.50 USD  0\n" in text
    assert "Total due  200.50 USD\n" in text
    [lee] = received(mail_server, "lee@customer.example")
    assert "45.00 USD" in bodies(lee)[0] and "INV-1001" not in bodies(lee)[0]


def test_sixty_open_invoices_are_all_on_the_statement_and_add_up(api, company, mail_server, outbox):
    save_statement_schedule(api)
    amounts = {f"INV-{3000 + k}": Decimal(f"{k * 7}.{k:02d}") for k in range(1, 61)}
    for k, (number, amount_due) in enumerate(amounts.items()):
        due = FIRST - timedelta(days=k)
        sync_invoice(api, number, invoice(number, due, amount_due=str(amount_due), total=str(amount_due)))

    assert run_statements(api, FIRST) == 1
    assert outbox.drain() == []

    [message] = received(mail_server)
    html, text = bodies(message)
    total = sum(amounts.values(), Decimal(0))
    for number, amount_due in amounts.items():
        assert f"<td>{number}</td>" in html and f"{amount_due} USD" in html
        assert f"\n{number}  " in text
    assert f'<th align="right">{total} USD</th>' in html
    assert f"Total due  {total} USD" in text
    assert html.index("INV-3060") < html.index("INV-3001")  # oldest due date first


def test_a_customer_without_open_invoices_gets_no_statement(api, company, mail_server, outbox):
    save_statement_schedule(api)
    assert run_statements(api, FIRST) == 0  # no invoices at all

    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST, status="paid", amount_due="0.00"))
    sync_invoice(api, "INV-1002", invoice("INV-1002", FIRST, status="void"))

    assert run_statements(api, FIRST) == 0
    assert outbox.drain() == [] and mail_server.messages == []


def test_a_monthly_schedule_sends_only_on_its_day_of_the_month(api, company, mail_server, outbox):
    save_statement_schedule(api, frequency="monthly", day=15)
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))

    assert run_statements(api, FIRST) == 0
    assert run_statements(api, date(2026, 12, 14)) == 0
    assert run_statements(api, date(2026, 12, 15)) == 1
    assert run_statements(api, date(2027, 1, 15)) == 1  # the next month, a statement of its own
    assert outbox.drain() == []
    assert [m["Subject"] for m in received(mail_server)] == [
        "Your statement from Acme Plumbing, December 15, 2026",
        "Your statement from Acme Plumbing, January 15, 2027",
    ]


def test_a_weekly_schedule_sends_only_on_its_weekday(api, company, mail_server, outbox):
    save_statement_schedule(api, frequency="weekly", day=2)  # Tuesdays
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))

    assert run_statements(api, FIRST) == 1  # a Tuesday
    assert [run_statements(api, FIRST + timedelta(days=d)) for d in range(1, 7)] == [0] * 6
    assert run_statements(api, FIRST + timedelta(days=7)) == 1
    assert outbox.drain() == []
    assert len(received(mail_server)) == 2


def test_only_customers_whose_open_total_reaches_the_minimum_balance_get_one(
    api, company, mail_server, outbox
):
    save_statement_schedule(api, min_balance="150.00")
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST, amount_due="100.00"))
    sync_invoice(api, "INV-1002", invoice("INV-1002", FIRST, amount_due="50.00"))  # Dana: 150.00
    sync_invoice(api, "INV-1003", invoice("INV-1003", FIRST, customer=LEE, amount_due="149.99"))

    assert run_statements(api, FIRST) == 1
    assert outbox.drain() == []

    assert len(received(mail_server)) == 1 and received(mail_server, LEE["email"]) == []


def test_customers_not_emailed_get_no_statement(api, company, mail_server, outbox):
    save_statement_schedule(api)
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST, customer={"contact_method": "text"}))
    sync_invoice(api, "INV-1002", invoice("INV-1002", FIRST, customer=LEE | {"email": "not an address"}))

    assert run_statements(api, FIRST) == 0


def test_a_statement_is_sent_once_per_customer_and_date(api, company, mail_server, outbox):
    save_statement_schedule(api)
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))
    assert run_statements(api, FIRST) == 1

    [record] = outbox.receive()
    for _ in range(3):  # SQS delivers at least once: the same record again
        assert outbox.worker.lambda_handler(outbox.event([record]), FakeContext())["batchItemFailures"] == []
    assert len(mail_server.messages) == 1

    assert run_statements(api, FIRST) == 0  # the same date again: nothing new
    assert outbox.receive() == []


def test_a_payment_recorded_after_the_run_is_off_the_statement(api, company, mail_server, outbox):
    save_statement_schedule(api)
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))
    sync_invoice(api, "INV-1002", invoice("INV-1002", FIRST, amount_due="30.00"))
    assert run_statements(api, FIRST) == 1

    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST, status="paid", amount_due="0.00"))
    assert outbox.drain() == []

    [message] = received(mail_server)
    html, text = bodies(message)
    assert "INV-1001" not in html and "<td>INV-1002</td>" in html
    assert "Total due  30.00 USD" in text


@pytest.mark.parametrize(
    "payment",
    [
        pytest.param({"status": "paid", "amount_due": "0.00"}, id="paid"),
        pytest.param({"amount_due": "10.00"}, id="below-the-minimum"),
    ],
)
def test_a_statement_whose_invoices_are_paid_after_the_run_is_not_sent(
    api, company, mail_server, outbox, payment
):
    save_statement_schedule(api, min_balance="50.00")
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))
    assert run_statements(api, FIRST) == 1

    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST, **payment))
    assert outbox.drain() == []

    assert mail_server.messages == []
    _, page, _ = api.call("GET", "/emails")
    assert page["items"] == []


def test_a_schedule_switched_off_stops_what_was_queued(api, company, mail_server, outbox):
    save_statement_schedule(api)
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))
    assert run_statements(api, FIRST) == 1

    save_statement_schedule(api, active=False)
    assert outbox.drain() == []

    assert mail_server.messages == []


def test_the_statement_is_in_the_sent_log_with_its_invoices_total(api, company, mail_server, outbox):
    save_statement_schedule(api)
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))
    sync_invoice(api, "INV-1002", invoice("INV-1002", FIRST, amount_due="5.25"))
    run_statements(api, FIRST)
    outbox.drain()

    query = {"document_type": "statement", "document_number": "ST-C-17-2026-12-01"}
    _, page, _ = api.call("GET", "/emails", query=query)
    [entry] = page["items"]
    assert (entry["kind"], entry["automation"], entry["status"]) == ("automation", "statement", "sent")
    assert entry["to"] == [CUSTOMER] and entry["from"] == ACCOUNT and entry["profile"] == "company"
    assert entry["document"] == {
        "type": "statement",
        "number": "ST-C-17-2026-12-01",
        "customer_name": "Dana Whitfield",
        "amount": "125.25",
        "currency": "USD",
        "totals": {"USD": "125.25"},
        "statement_date": "2026-12-01",
        "customer_id": "C-17",
        "invoice_count": 2,
    }
    assert entry["message_id"] == mail_server.messages[0].parsed()["Message-ID"]


def test_the_invoice_pdfs_are_attached_when_the_schedule_says_so(api, company, mail_server, outbox):
    save_statement_schedule(api, attach_invoices=True)
    pdf = pdf_file(b"INV-1001 " * 100)
    sync_invoice(
        api, "INV-1001", invoice("INV-1001", FIRST, pdf_upload_id=upload_pdf(api, pdf, "INV-1001.pdf"))
    )
    sync_invoice(api, "INV-1002", invoice("INV-1002", FIRST))  # no PDF of its own

    run_statements(api, FIRST)
    assert outbox.drain() == []

    [message] = received(mail_server)
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "INV-1001.pdf" and attachment.get_content() == pdf
    query = {"document_type": "statement", "document_number": "ST-C-17-2026-12-01"}
    _, page, _ = api.call("GET", "/emails", query=query)
    assert page["items"][0]["attachments"] == [{"filename": "INV-1001.pdf", "size": len(pdf)}]


def test_a_statement_whose_invoice_pdf_cannot_be_attached_fails_with_a_hint(
    api, company, mail_server, outbox
):
    save_statement_schedule(api, attach_invoices=True)
    missing = "01KAW3KZ4T7M2Q9X8B6N5C3D1E"  # no upload of the company's
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST, pdf_upload_id=missing))

    run_statements(api, FIRST)
    assert outbox.drain() == []  # a permanent failure: not retried

    assert mail_server.messages == []
    query = {"document_type": "statement", "document_number": "ST-C-17-2026-12-01"}
    _, page, _ = api.call("GET", "/emails", query=query)
    [entry] = page["items"]
    assert (entry["status"], entry["automation"]) == ("failed", "statement")
    assert entry["error"]["category"] == "attachment_unusable"
    assert "/statements/schedule" in entry["error"]["hint"]
    assert run_statements(api, FIRST) == 0  # once per customer and date, failed or not


def test_another_company_runs_its_own_statements_only(api, company, mail_server, outbox):
    save_statement_schedule(api)
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))

    assert run_statements(api, FIRST, identity=OTHER_TENANT) == 0  # its schedule is the default
    assert outbox.receive() == []


# --- a statement sent now -------------------------------------------------------------------------


def test_a_statement_sent_now_arrives_and_is_logged(api, company, mail_server):
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))
    sync_invoice(api, "INV-1002", invoice("INV-1002", FIRST + timedelta(days=30), amount_due="9.99"))
    sync_invoice(api, "INV-1003", invoice("INV-1003", FIRST, customer=LEE))

    status, entry, _ = api.call("POST", "/customers/C-17/statement", identity=USER)  # any user

    assert status == 200, entry
    [message] = received(mail_server)
    assert "Auto-Submitted" not in message  # a person asked for it
    html, text = bodies(message)
    assert "<td>INV-1001</td>" in html and "<td>INV-1002</td>" in html and "INV-1003" not in html
    assert "Total due  129.99 USD" in text
    day = date.fromisoformat(entry["document"]["statement_date"])
    assert abs((day - today_there()).days) <= 1  # today in the company's time zone
    assert (entry["kind"], entry["automation"], entry["status"]) == ("automation", "statement", "sent")
    assert entry["document"]["number"] == f"ST-C-17-{day.isoformat()}"
    assert entry["document"]["amount"] == "129.99" and entry["message_id"] == message["Message-ID"]
    status, logged, _ = api.call("GET", f"/emails/{entry['id']}")
    assert status == 200 and logged == entry


def test_a_statement_sent_now_needs_no_active_schedule_nor_the_automated_contact_method(
    api, company, mail_server
):
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST, customer={"contact_method": "none"}))

    status, entry, _ = api.call("POST", "/customers/C-17/statement")  # the schedule is inactive

    assert status == 200, entry
    assert len(received(mail_server)) == 1


def test_a_statement_sent_now_neither_takes_nor_blocks_the_scheduled_one(api, company, mail_server, outbox):
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))
    status, entry, _ = api.call("POST", "/customers/C-17/statement")
    assert status == 200, entry

    today = date.fromisoformat(entry["document"]["statement_date"])
    save_statement_schedule(api, frequency="weekly", day=today.isoweekday())
    assert run_statements(api, today) == 1  # the same customer and date: still due
    assert outbox.drain() == []

    assert len(received(mail_server)) == 2


@pytest.mark.parametrize(
    ("invoices", "status", "field"),
    [
        pytest.param([], 404, None, id="no-invoices"),
        pytest.param(
            [invoice("INV-1001", FIRST, status="paid", amount_due="0.00")], 409, None, id="none-open"
        ),
        pytest.param(
            [invoice("INV-1001", FIRST, customer={"email": "dana at customer"})],
            422,
            "customer.email",
            id="no-valid-address",
        ),
    ],
)
def test_a_statement_that_cannot_be_sent_now_says_why(api, company, mail_server, invoices, status, field):
    for body in invoices:
        sync_invoice(api, body["number"], body)

    answer, problem, _ = api.call("POST", "/customers/C-17/statement")

    assert answer == status, problem
    if field:
        assert problem["errors"][0]["field"] == field
    assert mail_server.messages == []


def test_a_statement_sent_now_needs_the_company_settings(api):
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))

    status, problem, _ = api.call("POST", "/customers/C-17/statement")

    assert status == 409 and "/settings/company" in problem["detail"], problem


def test_another_company_cannot_get_a_statement_of_our_customer(api, company, mail_server):
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))

    status, problem, _ = api.call("POST", "/customers/C-17/statement", identity=OTHER_TENANT)
    previewed, _, _ = api.call("POST", "/statements/preview", {"customer_id": "C-17"}, identity=OTHER_TENANT)

    assert status == 404, problem
    assert previewed == 404
    assert mail_server.messages == []


# --- previews -------------------------------------------------------------------------------------


def test_the_statement_preview_with_sample_data(api):
    status, preview, _ = api.call("POST", "/statements/preview", {"customer_id": None})

    assert status == 200, preview
    assert preview["subject"].startswith("Your statement from Acme Plumbing, ")
    assert "<td>INV-1001</td>" in preview["html"] and "<td>INV-1002</td>" in preview["html"]
    assert "Total due  200.00 USD" in preview["text"]


def test_the_statement_preview_with_a_customers_open_invoices_and_the_saved_wording(api, company):
    save_statement_schedule(
        api,
        subject="{{ customer.name }}: {{ statement.total_due }}",
        body_html="<ul>{% for i in statement.invoices %}<li>{{ i.number }} {{ i.amount_due }}</li>"
        "{% endfor %}</ul><p>{{ company.name }}</p>",
    )
    sync_invoice(api, "INV-1001", invoice("INV-1001", FIRST))
    sync_invoice(api, "INV-1002", invoice("INV-1002", FIRST, status="paid", amount_due="0.00"))

    status, preview, _ = api.call("POST", "/statements/preview", {"customer_id": "C-17"}, identity=USER)

    assert status == 200, preview
    assert preview["subject"] == "Dana Whitfield: 120.00 USD"
    assert preview["html"] == "<ul><li>INV-1001 120.00 USD</li></ul><p>Acme Plumbing</p>"
    assert preview["text"] == "- INV-1001 120.00 USD\n\nAcme Plumbing\n"


def test_the_statement_preview_of_an_unknown_customer_is_a_404(api):
    status, problem, _ = api.call("POST", "/statements/preview", {"customer_id": "C-404"})

    assert status == 404, problem


def test_an_invoice_rule_preview_with_sample_data_and_with_an_invoice(api, company):
    sync_invoice(api, "INV-2001", invoice("INV-2001", FIRST, amount_due="75.00"))

    sample, sampled, _ = api.call("POST", "/invoice-reminders/overdue/preview", {"invoice_id": None})
    real, previewed, _ = api.call("POST", "/invoice-reminders/on_due/preview", {"invoice_id": "INV-2001"})

    assert sample == 200, sampled
    assert sampled["subject"] == "Invoice INV-1001 is past due"
    assert "120.00 USD" in sampled["html"] and "Hello Dana," in sampled["text"]
    assert real == 200, previewed
    assert previewed["subject"] == "Invoice INV-2001 is due today"
    assert "75.00 USD" in previewed["html"] and "December 1, 2026" in previewed["html"]
    assert 'href="https://pay.example/i/INV-2001"' in previewed["html"]
    assert (
        "<p>" not in previewed["text"] and "Pay online (https://pay.example/i/INV-2001)" in previewed["text"]
    )


@pytest.mark.parametrize(
    ("rule_id", "invoice_id"), [("no-such-rule", None), ("overdue", "INV-404")], ids=["rule", "invoice"]
)
def test_an_invoice_rule_preview_of_an_unknown_rule_or_invoice_is_a_404(api, rule_id, invoice_id):
    status, problem, _ = api.call("POST", f"/invoice-reminders/{rule_id}/preview", {"invoice_id": invoice_id})

    assert status == 404, problem


def test_the_merge_fields_list_the_statement_fields_after_the_invoice_ones(api):
    status, fields, _ = api.call("GET", "/merge-fields")

    assert status == 200
    by_name = {f["name"]: f for f in fields}
    assert [
        by_name[n]["number"] for n in ("statement.date", "statement.total_due", "statement.invoices")
    ] == [
        90,
        91,
        92,
    ]
    assert all(by_name[n]["example"] for n in by_name if n.startswith("statement."))
    assert max(f["number"] for f in fields if f["name"].startswith("invoice.")) < 90
