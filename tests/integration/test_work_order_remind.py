"""POST /work-orders/{id}/remind through the handlers on moto, with a real SMTP server on loopback: the
reminder automation's wording as the scheduled run sends it, the work order marked, the sent-log
entry, the refusals (not scheduled, unknown, no address, another company's), the budget, the
Idempotency-Key, and the scheduled run afterwards."""

from __future__ import annotations

import time
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest

from local.events import USER, Identity
from local.smtp_server import RecordingHandler
from tests.support.factories import RUN_DATE, TOMORROW, company_settings, work_order
from tests.support.steps import activate, run_reminders, save_settings, sync

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "office@acme.example"
CUSTOMER = "wo-1@customer.example"
KEY = "3b9e7c1d-5a2f-4e8b-9c6d-7f1a2b3c4d5e"
OTHER_TENANT = Identity(tenant_id="other-co", user_id="admin-2", email="admin@other.example")
WORDING = {
    "subject": "Reminder: your visit on [21]",
    "body_html": "<p>Hello {{ customer.first_name }},</p><p>{{ technician.name }} comes on [21], "
    "{{ work_order.arrival_window }}, for {{ work_order.number }}.</p><p>{{ company.name }}</p>",
}


class RefusingHandler(RecordingHandler):
    """Refuses recipients at refused.example, as a real server refuses unknown mailboxes."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.example"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=RefusingHandler())


@pytest.fixture
def company(api, trust_local_ca, mail_server) -> dict[str, Any]:
    return save_settings(api, company_settings(ACCOUNT, PASSWORD, port=mail_server.port))


def remind(api, work_order_id: str = "WO-1", body: Any = None, **kwargs: Any):
    return api.call("POST", f"/work-orders/{work_order_id}/remind", body, **kwargs)


def what_it_says(message: EmailMessage) -> dict[str, Any]:
    """The parts of a delivered message that the wording and the work order decide."""
    return {
        "from": message["From"],
        "to": message["To"],
        "subject": message["Subject"],
        "auto_submitted": message["Auto-Submitted"],
        "html": message.get_body(("html",)).get_content(),
        "text": message.get_body(("plain",)).get_content(),
    }


def test_the_reminder_says_what_the_scheduled_reminder_says(api, company, outbox, mail_server):
    # Given the reminder wording and a work order due a reminder tomorrow
    activate(api, "reminder", **WORDING)
    body = work_order("WO-1", TOMORROW, customer={"name": "Dana Whitfield"})
    sync(api, "WO-1", body)

    # When a user sends its reminder now, and the work order is then reset and reminded by the run
    status, entry, _ = remind(api, identity=USER)  # any signed-in user of the company
    sync(api, "WO-1", body)  # the business application sends it again: confirmation `none`
    assert run_reminders(api) == 1  # the manual one took no ledger item
    assert outbox.drain() == []

    # Then both messages say the same, filled in with the work order
    assert status == 200, entry
    manual, scheduled = (m.parsed() for m in mail_server.messages)
    assert what_it_says(manual) == what_it_says(scheduled)
    assert manual["Subject"] == "Reminder: your visit on November 24, 2026"
    assert manual["To"] == CUSTOMER and manual["From"] == f"Acme Plumbing <{ACCOUNT}>"
    assert (
        "Luis Ortega comes on November 24, 2026, 9:00 AM - 11:00 AM, for WO-1."
        in manual.get_body(("html",)).get_content()
    )
    assert entry["message_id"] == manual["Message-ID"]


def test_the_work_order_is_marked_and_the_entry_is_in_the_sent_log(api, company, mail_server):
    sync(api, "WO-1", work_order("WO-1", TOMORROW))

    status, entry, _ = remind(api, body={})
    _, stored, _ = api.call("GET", "/work-orders/WO-1")
    _, logged, _ = api.call("GET", f"/emails/{entry['id']}")

    assert status == 200 and stored["confirmation_status"] == "confirmation_sent"
    assert logged == entry
    assert (logged["kind"], logged["status"], logged["automation"]) == ("automation", "sent", "reminder")
    assert logged["work_order_id"] == "WO-1" and logged["profile"] == "company"
    assert logged["from"] == ACCOUNT and logged["to"] == [CUSTOMER]
    _, page, _ = api.call("GET", "/emails", query={"work_order_id": "WO-1"})
    assert [item["id"] for item in page["items"]] == [entry["id"]]


def test_the_inactive_default_wording_is_sent_when_a_person_asks(api, company, mail_server):
    _, default, _ = api.call("GET", "/automations/reminder")
    sync(api, "WO-1", work_order("WO-1", TOMORROW))

    status, _, _ = remind(api)

    assert default["active"] is False and status == 200
    assert [m.rcpt_tos for m in mail_server.messages] == [(CUSTOMER,)]


def test_a_customer_who_wants_texts_still_gets_the_reminder_asked_for(api, company, mail_server):
    sync(api, "WO-1", work_order("WO-1", TOMORROW, customer={"contact_method": "text"}))

    status, _, _ = remind(api)

    assert status == 200 and [m.rcpt_tos for m in mail_server.messages] == [(CUSTOMER,)]


def test_a_day_of_a_multi_day_work_order_is_reminded_at_the_parents_address(api, company, mail_server):
    sync(api, "WO-9", work_order("WO-9", TOMORROW, customer={"email": "parent@customer.example"}))
    child = work_order("WO-9b", TOMORROW + timedelta(days=1), parent_id="WO-9", customer={"email": None})
    sync(api, "WO-9b", child)

    status, entry, _ = remind(api, "WO-9b")

    assert status == 200 and entry["to"] == ["parent@customer.example"]
    assert [m.rcpt_tos for m in mail_server.messages] == [("parent@customer.example",)]


@pytest.mark.parametrize("status_", ["completed", "cancelled", "en_route"])
def test_a_work_order_not_scheduled_is_409_and_nothing_is_sent(api, company, mail_server, status_):
    sync(api, "WO-1", work_order("WO-1", TOMORROW, status=status_))

    status, problem, _ = remind(api)

    assert status == 409 and status_.replace("_", " ") in problem["detail"]
    assert mail_server.messages == []
    assert api.call("GET", "/work-orders/WO-1")[1]["confirmation_status"] == "none"


def test_an_unknown_work_order_is_404(api, company, mail_server):
    status, problem, _ = remind(api, "WO-404")

    assert status == 404 and "WO-404" in problem["detail"]
    assert mail_server.messages == []


@pytest.mark.parametrize("address", [None, "dana at customer"], ids=["none", "invalid"])
def test_a_customer_without_a_valid_address_is_422_naming_customer_email(api, company, mail_server, address):
    sync(api, "WO-1", work_order("WO-1", TOMORROW, customer={"email": address}))

    status, problem, _ = remind(api)

    assert status == 422 and [e["field"] for e in problem["errors"]] == ["customer.email"]
    assert mail_server.messages == []


def test_a_day_whose_parent_has_no_address_is_422(api, company, mail_server):
    sync(api, "WO-9", work_order("WO-9", TOMORROW, customer={"email": None}))
    child = work_order("WO-9b", TOMORROW, parent_id="WO-9", customer={"email": "child@customer.example"})
    sync(api, "WO-9b", child)

    status, problem, _ = remind(api, "WO-9b")

    assert status == 422 and [e["field"] for e in problem["errors"]] == ["customer.email"]
    assert mail_server.messages == []


def test_another_companys_work_order_is_404(api, company, mail_server):
    status, saved, _ = api.call(
        "PUT", "/work-orders/WO-OTHER", work_order("WO-OTHER", TOMORROW), identity=OTHER_TENANT
    )
    assert status == 200, saved

    status, _, _ = remind(api, "WO-OTHER")

    assert status == 404 and mail_server.messages == []


def test_over_the_per_minute_budget_the_second_reminder_is_429_and_not_sent(api, trust_local_ca, mail_server):
    save_settings(api, company_settings(ACCOUNT, PASSWORD, port=mail_server.port, limits={"per_minute": 1}))
    sync(api, "WO-1", work_order("WO-1", TOMORROW))
    sync(api, "WO-2", work_order("WO-2", TOMORROW))
    into = time.time() % 60
    if into > 50:  # both sends in one per-minute window
        time.sleep(60.5 - into)

    first, _, _ = remind(api, "WO-1")
    status, problem, headers = remind(api, "WO-2")

    assert first == 200
    assert status == 429 and problem["limit"] == "per_minute" and int(headers["retry-after"]) >= 1
    assert len(mail_server.messages) == 1
    assert api.call("GET", "/work-orders/WO-2")[1]["confirmation_status"] == "none"


def test_the_same_idempotency_key_twice_sends_one_mail_and_replays_the_answer(api, company, mail_server):
    sync(api, "WO-1", work_order("WO-1", TOMORROW))

    first = remind(api, headers={"Idempotency-Key": KEY})
    second = remind(api, headers={"Idempotency-Key": KEY})

    assert first[0] == second[0] == 200 and first[1] == second[1]
    assert second[2].get("idempotent-replayed") == "true" and "idempotent-replayed" not in first[2]
    assert len(mail_server.messages) == 1


def test_a_refused_recipient_is_502_with_the_failed_entry_and_the_work_order_unmarked(
    api, company, mail_server
):
    sync(api, "WO-1", work_order("WO-1", TOMORROW, customer={"email": "dana@refused.example"}))

    status, problem, _ = remind(api)

    assert status == 502 and problem["email_id"]
    _, logged, _ = api.call("GET", f"/emails/{problem['email_id']}")
    assert (logged["status"], logged["automation"], logged["work_order_id"]) == ("failed", "reminder", "WO-1")
    assert mail_server.messages == []
    assert api.call("GET", "/work-orders/WO-1")[1]["confirmation_status"] == "none"


def test_after_a_manual_reminder_the_scheduled_run_sends_no_second_one(api, company, outbox, mail_server):
    # Given an active reminder and a work order due one on the run's day, reminded by hand
    activate(api, "reminder")
    sync(api, "WO-1", work_order("WO-1", TOMORROW))
    assert remind(api)[0] == 200

    # When the scheduled run for that day comes and the worker drains the outbox
    queued = run_reminders(api, RUN_DATE)
    assert outbox.drain() == []

    # Then the work order, now `confirmation_sent`, is out of the index: one reminder in all
    assert queued == 0
    assert [m.rcpt_tos for m in mail_server.messages] == [(CUSTOMER,)]
    _, page, _ = api.call("GET", "/emails", query={"work_order_id": "WO-1"})
    assert len(page["items"]) == 1
