"""The suppression list through the handlers, with a real SMTP server on loopback: the API (list,
add, remove, admins only, one company's list only), and every send path refusing a suppressed
address: document email and its resend (422 naming the field, nothing sent), the automated emails
(not sent, logged `suppressed`, never tried again), the manual reminders and the manual statement."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from local.events import USER, FakeContext, Identity
from tests.support.factories import TIMEZONE, TOMORROW, invoice, smtp_settings, work_order
from tests.support.steps import (
    activate,
    activate_rule,
    run_invoice_reminders,
    run_reminders,
    save_settings,
    sync,
    sync_invoice,
)

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "billing@acme.example"
DANA = "dana@customer.example"
OTHER_TENANT = Identity(tenant_id="other-co", user_id="admin-2", email="admin@other.example")
DOCUMENT = {"type": "invoice", "number": "INV-1001", "customer_name": "Dana Whitfield"}


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


@pytest.fixture
def company(api, trust_local_ca, mail_server) -> dict[str, Any]:
    return save_settings(api, smtp_settings(ACCOUNT, PASSWORD, port=mail_server.port, timezone=TIMEZONE))


def suppress(api, address: str, **kwargs: Any) -> tuple[int, Any]:
    status, body, _ = api.call("PUT", f"/suppressions/{address}", {"reason": "manual"}, **kwargs)
    return status, body


def listed(api, **kwargs: Any) -> list[str]:
    status, body, _ = api.call("GET", "/suppressions", **kwargs)
    assert status == 200, body
    return [item["email"] for item in body["items"]]


# --- the list ----------------------------------------------------------------------------------------


def test_an_address_is_added_listed_and_removed(api):
    status, entry = suppress(api, "Dana@Customer.EXAMPLE")
    assert status == 200, entry
    assert (entry["email"], entry["reason"], entry["email_id"]) == ("Dana@customer.example", "manual", None)
    assert listed(api) == ["Dana@customer.example"]

    status, _, _ = api.call("DELETE", "/suppressions/Dana%40CUSTOMER.example")
    assert status == 204
    assert listed(api) == []
    status, problem, _ = api.call("DELETE", "/suppressions/Dana@customer.example")
    assert status == 404, problem


def test_the_domain_is_compared_without_case_and_the_local_part_as_written(api, company, mail_server):
    suppress(api, "Dana@customer.example")

    refused, _, _ = api.call(
        "POST", "/documents/email", {"document": DOCUMENT, "to": ["Dana@CUSTOMER.example"]}
    )
    sent, entry, _ = api.call("POST", "/documents/email", {"document": DOCUMENT, "to": [DANA]})

    assert refused == 422
    assert sent == 200, entry  # dana@ is not Dana@: some servers tell them apart
    assert [m.rcpt_tos for m in mail_server.messages] == [(DANA,)]


def test_only_administrators_change_the_list_and_each_company_sees_its_own(api):
    assert suppress(api, DANA, identity=USER)[0] == 403
    assert api.call("DELETE", f"/suppressions/{DANA}", identity=USER)[0] == 403
    assert suppress(api, DANA)[0] == 200

    assert listed(api, identity=USER) == [DANA]  # any user of the company may read it
    assert listed(api, identity=OTHER_TENANT) == []
    assert api.call("DELETE", f"/suppressions/{DANA}", identity=OTHER_TENANT)[0] == 404
    assert listed(api) == [DANA]


@pytest.mark.parametrize("address", ["not-an-address", "dana@", "@customer.example"])
def test_a_malformed_address_is_a_422_naming_email(api, address):
    status, problem = suppress(api, address)
    assert status == 422 and problem["errors"][0]["field"] == "email", problem


# --- document email and resend ---------------------------------------------------------------------


def test_a_document_email_to_a_suppressed_address_is_a_422_naming_the_field_and_nothing_is_sent(
    api, company, mail_server
):
    suppress(api, "bounced@customer.example")

    status, problem, _ = api.call(
        "POST",
        "/documents/email",
        {"document": DOCUMENT, "to": [DANA], "cc": ["bounced@customer.example"]},
    )

    assert status == 422, problem
    [error] = problem["errors"]
    assert error["field"] == "cc" and "bounced@customer.example" in error["message"]
    assert "suppression list since" in error["message"] and "an administrator" in error["message"]
    assert mail_server.messages == []
    assert api.call("GET", "/emails")[1]["items"] == []


def test_a_resend_to_an_address_suppressed_since_is_refused(api, company, mail_server):
    status, entry, _ = api.call("POST", "/documents/email", {"document": DOCUMENT, "to": [DANA]})
    assert status == 200, entry
    suppress(api, DANA)

    status, problem, _ = api.call("POST", f"/emails/{entry['id']}/resend")

    assert status == 422 and problem["errors"][0]["field"] == "to", problem
    assert len(mail_server.messages) == 1


# --- automated email -------------------------------------------------------------------------------


def test_a_reminder_to_a_suppressed_address_is_logged_suppressed_and_never_tried_again(
    api, company, mail_server, outbox
):
    activate(api, "reminder")
    body = work_order("WO-1", TOMORROW)
    sync(api, "WO-1", body)
    suppress(api, body["customer"]["email"])

    assert run_reminders(api) == 1
    assert outbox.drain() == []

    assert mail_server.messages == []
    [entry] = api.call("GET", "/emails")[1]["items"]
    assert (entry["status"], entry["automation"], entry["work_order_id"]) == (
        "suppressed",
        "reminder",
        "WO-1",
    )
    assert run_reminders(api) == 0  # the occurrence is used up: never queued again


def test_an_invoice_reminder_to_a_suppressed_address_is_logged_suppressed(api, company, mail_server, outbox):
    activate_rule(api, "on_due")
    sync_invoice(api, "INV-2001", invoice("INV-2001", date(2026, 12, 1)))
    suppress(api, DANA)

    assert run_invoice_reminders(api, date(2026, 12, 1)) == 1
    [message] = outbox.receive()
    assert outbox.worker.lambda_handler(outbox.event([message]), FakeContext())["batchItemFailures"] == []

    assert mail_server.messages == []
    [entry] = api.call("GET", "/emails")[1]["items"]
    assert (entry["status"], entry["automation"]) == ("suppressed", "invoice_reminder")
    assert entry["to"] == [DANA]


def test_a_batch_sends_to_the_others_when_one_is_suppressed(api, company, mail_server, outbox):
    activate(api, "reminder")
    first, second = work_order("WO-1", TOMORROW), work_order("WO-2", TOMORROW)
    sync(api, "WO-1", first)
    sync(api, "WO-2", second)
    suppress(api, first["customer"]["email"])

    assert run_reminders(api) == 2
    assert outbox.drain() == []

    assert [m.rcpt_tos for m in mail_server.messages] == [(second["customer"]["email"],)]


# --- manual sends ----------------------------------------------------------------------------------


def test_a_manual_invoice_reminder_and_statement_to_a_suppressed_customer_are_422(api, company, mail_server):
    sync_invoice(api, "INV-2001", invoice("INV-2001", date(2026, 12, 1) - timedelta(days=10)))
    suppress(api, DANA)

    reminder, problem, _ = api.call("POST", "/invoices/INV-2001/remind", {"rule_id": None})
    statement, statement_problem, _ = api.call("POST", "/customers/C-17/statement")

    assert reminder == 422 and problem["errors"][0]["field"] == "customer.email", problem
    assert statement == 422 and statement_problem["errors"][0]["field"] == "customer.email", statement_problem
    assert mail_server.messages == []


def test_a_manual_work_order_reminder_to_a_suppressed_customer_is_422(api, company, mail_server):
    body = work_order("WO-1", TOMORROW)
    sync(api, "WO-1", body)
    suppress(api, body["customer"]["email"])

    status, problem, _ = api.call("POST", "/work-orders/WO-1/remind")

    assert status == 422 and problem["errors"][0]["field"] == "customer.email", problem
    assert mail_server.messages == []
