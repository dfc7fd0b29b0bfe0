"""The invoice reminders' daily run through the API, the outbox queue and the worker, with a real SMTP
server on loopback: which invoices a rule reminds on a day, each (rule, invoice, send) once ever, a
payment recorded after the run stops a queued reminder, and the PDF and the payment link arrive."""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

import pytest

from local.events import USER, FakeContext, Identity
from mailer.dal.ledger_table import LedgerStore
from tests.support.api import load_function
from tests.support.factories import TIMEZONE, invoice, pdf_file, smtp_settings
from tests.support.steps import (
    activate_rule,
    run_invoice_reminders,
    save_settings,
    sync_invoice,
    upload_pdf,
)

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "billing@acme.example"
CUSTOMER = "dana@customer.example"
DUE = date(2026, 12, 1)
PDF = pdf_file(b"INV-2001 " * 200)
OTHER_TENANT = Identity(tenant_id="other-co", user_id="admin-2", email="admin@other.example")


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


@pytest.fixture
def company(api, trust_local_ca, mail_server) -> dict[str, Any]:
    return save_settings(api, smtp_settings(ACCOUNT, PASSWORD, port=mail_server.port, timezone=TIMEZONE))


def delivered(mail_server) -> list[tuple[str, str]]:
    """(invoice number in the subject, recipient) of every delivered message, in order."""
    return [(m.parsed()["Subject"], m.parsed()["To"]) for m in mail_server.messages]


def test_the_overdue_rule_reminds_exactly_the_invoices_due_on_the_day_with_pdf_and_payment_link(
    api, company, mail_server, outbox
):
    activate_rule(api, "overdue")  # 7 days after the due date, every 7 days, 4 sends at most
    pdf = upload_pdf(api, PDF, "INV-2001.pdf")
    sync_invoice(api, "INV-2001", invoice("INV-2001", DUE, pdf_upload_id=pdf))  # first send on 12-08
    sync_invoice(api, "INV-2002", invoice("INV-2002", DUE - timedelta(days=7)))  # second send
    sync_invoice(api, "INV-2003", invoice("INV-2003", DUE - timedelta(days=1)))  # not on its day
    sync_invoice(api, "INV-2004", invoice("INV-2004", DUE, status="paid"))
    sync_invoice(api, "INV-2005", invoice("INV-2005", DUE, customer={"contact_method": "text"}))
    sync_invoice(api, "INV-2006", invoice("INV-2006", DUE, amount_due="0.00"))

    assert run_invoice_reminders(api, date(2026, 12, 8)) == 2
    assert outbox.drain() == []

    subjects = sorted(subject for subject, _ in delivered(mail_server))
    assert subjects == ["Invoice INV-2001 is past due", "Invoice INV-2002 is past due"]
    first = next(m.parsed() for m in mail_server.messages if "INV-2001" in m.parsed()["Subject"])
    assert first["To"] == CUSTOMER and first["Auto-Submitted"] == "auto-generated"
    html = first.get_body(("html",)).get_content()
    assert 'href="https://pay.example/i/INV-2001"' in html and "120.00 USD" in html
    [attachment] = list(first.iter_attachments())
    assert attachment.get_filename() == "INV-2001.pdf" and attachment.get_content() == PDF

    assert run_invoice_reminders(api, date(2026, 12, 8)) == 0  # the same day again: nothing new
    assert outbox.drain() == [] and len(mail_server.messages) == 2


def test_each_reminder_is_in_the_sent_log_as_the_invoices_reminder(api, company, mail_server, outbox):
    activate_rule(api, "on_due")
    pdf = upload_pdf(api, PDF, "INV-2001.pdf")
    sync_invoice(api, "INV-2001", invoice("INV-2001", DUE, pdf_upload_id=pdf))

    run_invoice_reminders(api, DUE)
    outbox.drain()

    _, page, _ = api.call("GET", "/emails", query={"document_type": "invoice", "document_number": "INV-2001"})
    [entry] = page["items"]
    assert (entry["kind"], entry["automation"], entry["status"]) == ("automation", "invoice_reminder", "sent")
    assert entry["to"] == [CUSTOMER] and entry["from"] == ACCOUNT
    assert entry["document"]["invoice_id"] == "INV-2001"
    assert entry["attachments"] == [{"filename": "INV-2001.pdf", "size": len(PDF)}]
    assert entry["message_id"] == mail_server.messages[0].parsed()["Message-ID"]


def test_a_payment_recorded_after_the_run_stops_the_queued_reminder(api, company, mail_server, outbox):
    activate_rule(api, "overdue")
    sync_invoice(api, "INV-2001", invoice("INV-2001", DUE))
    assert run_invoice_reminders(api, date(2026, 12, 8)) == 1

    sync_invoice(api, "INV-2001", invoice("INV-2001", DUE, status="paid", amount_due="0.00"))
    assert outbox.drain() == []

    assert mail_server.messages == []
    _, page, _ = api.call("GET", "/emails")
    assert page["items"] == []
    # and no later send of the rule either: a paid invoice leaves the due index
    assert run_invoice_reminders(api, date(2026, 12, 15)) == 0


def test_repeat_and_max_sends_count_the_sends_and_stop_after_the_last(api, company, mail_server, outbox):
    activate_rule(api, "overdue", repeat_every_days=10, max_sends=3)
    sync_invoice(api, "INV-2001", invoice("INV-2001", DUE))

    sends = [DUE + timedelta(days=7 + 10 * k) for k in range(4)]  # 12-08, 12-18, 12-28, and past max
    queued = [run_invoice_reminders(api, day) for day in sends]
    between = run_invoice_reminders(api, DUE + timedelta(days=12))
    outbox.drain()

    assert queued == [1, 1, 1, 0] and between == 0
    assert len(mail_server.messages) == 3
    _, entries, _ = api.call("GET", "/emails")
    assert {e["automation"] for e in entries["items"]} == {"invoice_reminder"}


def test_a_rule_around_month_ends_and_leap_days_counts_days_not_months(api, company, mail_server, outbox):
    activate_rule(api, "before_due", offset_days=-3)
    sync_invoice(api, "INV-2001", invoice("INV-2001", "2028-03-01"))  # 2028 is a leap year
    sync_invoice(api, "INV-2002", invoice("INV-2002", "2027-03-01"))

    assert run_invoice_reminders(api, date(2028, 2, 27)) == 1  # 2028-02-27 + 3 days = 03-01
    assert run_invoice_reminders(api, date(2027, 2, 26)) == 1  # 2027: 02-26 + 3 days = 03-01
    assert run_invoice_reminders(api, date(2027, 2, 27)) == 0
    outbox.drain()
    assert sorted(s for s, _ in delivered(mail_server)) == [
        "Invoice INV-2001 is due on March 1, 2028",
        "Invoice INV-2002 is due on March 1, 2027",
    ]


def test_a_redelivered_reminder_is_sent_once(api, company, mail_server, outbox):
    activate_rule(api, "on_due")
    sync_invoice(api, "INV-2001", invoice("INV-2001", DUE))
    run_invoice_reminders(api, DUE)

    [message] = outbox.receive()
    for _ in range(3):  # SQS delivers at least once: the same record again
        assert outbox.worker.lambda_handler(outbox.event([message]), FakeContext())["batchItemFailures"] == []

    assert len(mail_server.messages) == 1


def test_an_inactive_rule_queues_nothing_and_a_rule_switched_off_stops_what_was_queued(
    api, company, mail_server, outbox
):
    sync_invoice(api, "INV-2001", invoice("INV-2001", DUE))
    assert run_invoice_reminders(api, DUE) == 0  # every rule inactive by default

    saved = activate_rule(api, "on_due")
    assert run_invoice_reminders(api, DUE) == 1
    switched_off = {k: saved[k] for k in ("name", "offset_days", "subject", "body_html")} | {"active": False}
    status, _, _ = api.call("PUT", "/invoice-reminders/on_due", switched_off)
    assert status == 200
    assert outbox.drain() == []
    assert mail_server.messages == []


def test_only_an_administrator_runs_the_reminders_and_only_for_the_own_company(
    api, company, mail_server, outbox
):
    activate_rule(api, "on_due")
    sync_invoice(api, "INV-2001", invoice("INV-2001", DUE))

    status, problem, _ = api.call("POST", "/invoice-reminders/run", {"date": DUE.isoformat()}, identity=USER)
    assert status == 403, problem
    assert run_invoice_reminders(api, DUE, identity=OTHER_TENANT) == 0  # its rules are all inactive
    assert outbox.receive() == []


@pytest.mark.parametrize("day", ["2026-13-01", "12/08/2026", "9999-12-31"])
def test_a_bad_run_date_is_a_422_naming_date(api, company, day):
    status, problem, _ = api.call("POST", "/invoice-reminders/run", {"date": day})
    assert status == 422 and problem["errors"][0]["field"] == "date", problem


def test_a_worker_that_stopped_after_its_claim_sends_nothing_more_and_the_sweep_reports_it(
    api, company, mail_server, outbox, template
):
    activate_rule(api, "on_due")
    sync_invoice(api, "INV-2001", invoice("INV-2001", DUE))
    assert run_invoice_reminders(api, DUE) == 1
    [message] = outbox.receive()
    # The claim a worker made before it stopped (a crash after the server took the message).
    ledger = LedgerStore(template.names.ref("SendLedgerTable"))
    assert ledger.claim_many([("demo", "invoice_reminder", "INV-2001", "on_due:0")]).taken == {}

    assert outbox.worker.lambda_handler(outbox.event([message]), FakeContext())["batchItemFailures"] == []
    assert mail_server.messages == []  # the redelivery finds the claim: never twice

    sweep = load_function(template, "ClaimSweepFunction")
    sweep.services().claim_sweep.clock = lambda: time.time() + 3600
    assert sweep.lambda_handler({}, FakeContext(function_name="ClaimSweepFunction"))["marked"] == 1
    _, page, _ = api.call("GET", "/emails")
    [entry] = page["items"]
    assert (entry["status"], entry["automation"]) == ("unknown", "invoice_reminder")
