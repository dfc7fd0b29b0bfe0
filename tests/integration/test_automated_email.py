"""Automated email under moto with a real SMTP server: the reminder run, status changes, the worker.

The worker is driven as Lambda drives it (tests.support.outbox): records received from the (moto) SQS
queue, handed to the handler as an SQS event, deleted unless reported in batchItemFailures.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from local.events import USER, FakeContext
from local.smtp_server import RecordingHandler
from tests.support.api import load_function
from tests.support.factories import RUN_DATE, TOMORROW, company_settings, work_order
from tests.support.steps import activate, run_reminders, sync

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "office@acme.example"


class CountingHandler(RecordingHandler):
    """Counts SMTP sessions, and can refuse or defer as a real server would."""

    def __init__(self) -> None:
        super().__init__()
        self.peers: set = set()
        self.defer_data = 0  # answer 451 to the next N DATA commands
        self.refuse: set[str] = set()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.peers.add(session.peer)  # EHLO comes twice on a STARTTLS connection; the peer once
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.defer_data:
            self.defer_data -= 1
            return "451 4.3.0 Temporary local problem, try again later"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=CountingHandler())


@pytest.fixture
def company(api, trust_local_ca, mail_server):
    settings = company_settings(ACCOUNT, PASSWORD, port=mail_server.port)
    assert api.call("PUT", "/settings/company", settings)[0] == 200
    return settings


def recipients(server) -> list[str]:
    return sorted(addr for m in server.messages for addr in m.rcpt_tos)


# --- automation settings and templates ---------------------------------------------------------


def test_automations_have_inactive_defaults_before_anything_is_saved(api):
    status, automations, _ = api.call("GET", "/automations")

    assert status == 200
    assert [(a["type"], a["active"], a["is_default"]) for a in automations] == [
        ("reminder", False, True),
        ("confirmation", False, True),
        ("thank_you", False, True),
    ]
    assert automations[0]["days_before"] == 1


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"subject": "See you [999]"}, "subject", "[999] at line 1, column 9"),
        ({"body_html": "<p>Hi {{ customer.frist_name }}</p>"}, "body_html", "customer.frist_name"),
        ({"body_html": "<p>\n\n{% if customer.name %}</p>"}, "body_html", "syntax error"),
        ({"body_text": "{{ document.number }}"}, "body_text", "document.number"),
    ],
)
def test_a_broken_template_is_refused_at_save_time(api, change, field, words):
    status, body, _ = api.call(
        "PUT", "/automations/reminder", {"subject": "s", "body_html": "<p>b</p>"} | change
    )

    assert status == 422
    assert body["errors"][0]["field"] == field and words in body["errors"][0]["message"]
    assert api.call("GET", "/automations/reminder")[1]["is_default"] is True


def test_wording_that_fails_when_filled_in_is_refused_at_save_time(api):
    status, body, _ = api.call("PUT", "/automations/reminder", {"subject": "s", "body_html": "{{ 1 / 0 }}"})

    assert status == 422 and body["errors"][0]["field"] == "body_html"
    assert "ZeroDivisionError" in body["errors"][0]["message"]


def test_what_get_returns_can_be_saved_back(api):
    _, current, _ = api.call("GET", "/automations/confirmation")

    status, saved, _ = api.call("PUT", "/automations/confirmation", current | {"active": True})

    assert status == 200 and saved["active"] is True and saved["is_default"] is False


def test_a_render_failure_after_the_claim_is_logged_and_never_silently_dropped(
    api, company, outbox, mail_server, monkeypatch
):
    import mailer.automations.compose

    activate(api, "reminder")
    sync(api, "WO-1", work_order("WO-1", TOMORROW))
    run_reminders(api)

    def broken(*_args, **_kwargs):
        raise ValueError("wording broke")

    monkeypatch.setattr(mailer.automations.compose, "render_automation", broken)
    assert outbox.drain() == []

    _, page, _ = api.call("GET", "/emails", query={"work_order_id": "WO-1"})
    assert [(e["status"], e["error"]["category"]) for e in page["items"]] == [("failed", "template_error")]
    assert [m.rcpt_tos for m in mail_server.messages] == [("owner@acme.example",)]  # the company was told


def test_a_settings_outage_after_the_claim_gives_the_claim_back(
    api, company, outbox, mail_server, monkeypatch
):
    from mailer.errors import ServiceUnavailable
    from mailer.settings.service import SettingsService

    activate(api, "reminder")
    sync(api, "WO-1", work_order("WO-1", TOMORROW))
    run_reminders(api)
    original = SettingsService.saved_profile

    def outage(*_args, **_kwargs):
        raise ServiceUnavailable("settings table throttled")

    monkeypatch.setattr(SettingsService, "saved_profile", outage)
    assert len(outbox.drain()) == 1  # left for redelivery
    monkeypatch.setattr(SettingsService, "saved_profile", original)

    assert outbox.drain() == []
    assert recipients(mail_server) == ["wo-1@customer.example"]


def test_only_admins_change_automations(api):
    status, _, _ = api.call("PUT", "/automations/reminder", {"subject": "s", "body_html": "b"}, identity=USER)

    assert status == 403


def test_merge_fields_are_listed_with_numbers(api):
    status, fields, _ = api.call("GET", "/merge-fields")

    assert status == 200 and len(fields) >= 25
    assert {"number": 21, "name": "work_order.scheduled_date"}.items() <= next(
        f for f in fields if f["number"] == 21
    ).items()


def test_preview_renders_with_sample_data_or_a_work_order(api, company):
    activate(api, "reminder", subject="Visit on [21]", body_html="<p>Hi {{ customer.first_name }}, [22]</p>")
    sync(api, "WO-1", work_order("WO-1", TOMORROW, customer={"name": "Dana Whitfield"}))

    _, sample, _ = api.call("POST", "/automations/reminder/preview", {})
    _, real, _ = api.call("POST", "/automations/reminder/preview", {"work_order_id": "WO-1"})

    assert sample["subject"] == "Visit on November 24, 2026"
    assert real["subject"] == "Visit on November 24, 2026" and real["html"] == "<p>Hi Dana, 9:00 AM</p>"
    assert real["text"].strip() == "Hi Dana, 9:00 AM"
    assert api.call("POST", "/automations/reminder/preview", {"work_order_id": "nope"})[0] == 404


# --- work orders -----------------------------------------------------------------------------------


def test_work_order_round_trips(api):
    stored = sync(api, "WO-1", work_order("WO-1", TOMORROW))

    status, again, _ = api.call("GET", "/work-orders/WO-1")

    assert status == 200 and again == stored and again["id"] == "WO-1"
    assert api.call("GET", "/work-orders/WO-404")[0] == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"scheduled_start": "2026-11-24T09:00:00"}, "scheduled_start"),
        ({"status": "lost"}, "status"),
        ({"customer": {"name": "Dana\r\nBcc: x@y.example"}}, "customer.name"),
        ({"customer": {"contact_method": "pigeon"}}, "customer.contact_method"),
    ],
)
def test_invalid_work_order_is_422_naming_the_field(api, change, field):
    status, body, _ = api.call("PUT", "/work-orders/WO-1", work_order("WO-1", TOMORROW, **change))

    assert status == 422 and field in [e["field"] for e in body["errors"]]


# --- the reminder run --------------------------------------------------------------------------------


def sync_mixed_day(api) -> set[str]:
    """Work orders for tomorrow, today and next week, eligible and not; returns the eligible addresses."""
    sync(api, "WO-1", work_order("WO-1", TOMORROW))
    sync(api, "WO-2", work_order("WO-2", TOMORROW))
    sync(api, "WO-3", work_order("WO-3", RUN_DATE))
    sync(api, "WO-4", work_order("WO-4", RUN_DATE + timedelta(days=7)))
    sync(api, "WO-5", work_order("WO-5", TOMORROW, customer={"contact_method": "text"}))
    sync(api, "WO-6", work_order("WO-6", TOMORROW, customer={"email": "not an address"}))
    sync(api, "WO-7", work_order("WO-7", TOMORROW, status="en_route"))
    sync(api, "WO-8", work_order("WO-8", TOMORROW, confirmation_status="confirmed"))
    sync(api, "WO-9", work_order("WO-9", TOMORROW, customer={"email": "parent@customer.example"}))
    child = work_order("WO-9b", TOMORROW + timedelta(days=1), parent_id="WO-9")
    sync(api, "WO-9b", child | {"customer": child["customer"] | {"email": "child@customer.example"}})
    return {"wo-1@customer.example", "wo-2@customer.example", "parent@customer.example"}


def test_reminder_run_queues_exactly_the_eligible_work_orders(api, company, outbox, mail_server):
    activate(api, "reminder", subject="Reminder for [21]", body_html="<p>Hello {{ customer.name }}, [22]</p>")
    eligible = sync_mixed_day(api)

    assert run_reminders(api) == 3
    assert outbox.drain() == []

    assert recipients(mail_server) == sorted(eligible)
    message = next(m.parsed() for m in mail_server.messages if "wo-1@customer.example" in m.rcpt_tos)
    assert message["Subject"] == "Reminder for November 24, 2026"
    assert message["Auto-Submitted"] == "auto-generated"
    assert "Hello Customer WO-1, 9:00 AM" in message.get_body(("html",)).get_content()
    for work_order_id in ("WO-1", "WO-2", "WO-9"):
        assert (
            api.call("GET", f"/work-orders/{work_order_id}")[1]["confirmation_status"] == "confirmation_sent"
        )
    assert api.call("GET", "/work-orders/WO-9b")[1]["confirmation_status"] == "none"


def test_reminder_run_reads_the_index_and_never_scans(api, company, monkeypatch):
    import botocore.client

    calls: list[str] = []
    original = botocore.client.BaseClient._make_api_call

    def record(self, operation, params):
        calls.append(operation)
        return original(self, operation, params)

    activate(api, "reminder")
    for n in range(25):
        sync(api, f"WO-{n}", work_order(f"WO-{n}", TOMORROW))
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", record)

    assert run_reminders(api) == 25

    assert "Scan" not in calls
    assert calls.count("SendMessageBatch") == 3


def test_a_second_run_queues_and_sends_nothing(api, company, outbox, mail_server):
    activate(api, "reminder")
    sync_mixed_day(api)
    run_reminders(api)
    outbox.drain()

    assert run_reminders(api) == 0
    assert outbox.drain() == []
    assert len(mail_server.messages) == 3


def test_schedule_firing_twice_before_the_worker_sends_each_reminder_once(api, company, outbox, mail_server):
    activate(api, "reminder")
    sync_mixed_day(api)

    run_reminders(api)
    run_reminders(api)  # the second tick finds nothing sent yet and queues again
    outbox.drain()

    assert len(mail_server.messages) == 3
    assert recipients(mail_server) == sorted(set(recipients(mail_server)))


def test_sqs_redelivery_does_not_send_again(api, company, outbox, mail_server):
    activate(api, "reminder")
    sync(api, "WO-1", work_order("WO-1", TOMORROW))
    run_reminders(api)
    [message] = outbox.receive()

    assert outbox.worker.lambda_handler(outbox.event([message]), FakeContext())["batchItemFailures"] == []
    assert (
        outbox.worker.lambda_handler(outbox.event([message]), FakeContext())["batchItemFailures"] == []
    )  # redelivered

    assert len(mail_server.messages) == 1


def test_worker_crash_after_sending_before_acknowledging_does_not_send_again(
    api, company, outbox, mail_server, monkeypatch
):
    from mailer.dal.work_orders_table import WorkOrderStore

    activate(api, "reminder")
    sync(api, "WO-1", work_order("WO-1", TOMORROW))
    run_reminders(api)
    [message] = outbox.receive()
    original_put = WorkOrderStore.put

    def crash(*_args, **_kwargs):
        raise SystemExit("the Lambda runtime died")  # after the server accepted the message

    monkeypatch.setattr(WorkOrderStore, "put", crash)
    with pytest.raises(SystemExit):
        outbox.worker.lambda_handler(outbox.event([message]), FakeContext())
    monkeypatch.setattr(WorkOrderStore, "put", original_put)

    assert outbox.worker.lambda_handler(outbox.event([message]), FakeContext())["batchItemFailures"] == []
    assert len(mail_server.messages) == 1


def test_inactive_reminder_sends_nothing(api, company, outbox, mail_server):
    sync(api, "WO-1", work_order("WO-1", TOMORROW))

    assert run_reminders(api) == 0

    activate(api, "reminder")
    run_reminders(api)
    activate(api, "reminder", active=False)  # switched off while the reminder waited in the queue
    outbox.drain()
    assert mail_server.messages == []


def test_days_before_decides_which_day_is_reminded(api, company, outbox, mail_server):
    activate(api, "reminder", days_before=3)
    sync(api, "WO-1", work_order("WO-1", TOMORROW))
    sync(api, "WO-3", work_order("WO-3", RUN_DATE + timedelta(days=3)))

    assert run_reminders(api) == 1
    outbox.drain()
    assert recipients(mail_server) == ["wo-3@customer.example"]


def test_one_smtp_connection_per_sender_per_batch(api, company, outbox, mail_server):
    activate(api, "reminder")
    for n in range(4):
        sync(api, f"WO-{n}", work_order(f"WO-{n}", TOMORROW))
    run_reminders(api)

    outbox.drain()

    assert len(mail_server.messages) == 4
    assert len(mail_server.handler.peers) == 1


def test_transient_failure_is_retried_and_sent_once(api, company, outbox, mail_server):
    activate(api, "reminder")
    sync(api, "WO-1", work_order("WO-1", TOMORROW))
    run_reminders(api)
    mail_server.handler.defer_data = 1

    failed = outbox.drain()
    assert len(failed) == 1 and mail_server.messages == []

    assert outbox.drain() == []
    assert len(mail_server.messages) == 1
    assert api.call("GET", "/work-orders/WO-1")[1]["confirmation_status"] == "confirmation_sent"


def test_permanent_failure_is_logged_and_the_company_is_told_how_to_fix_it(api, company, outbox, mail_server):
    activate(api, "reminder")
    sync(api, "WO-1", work_order("WO-1", TOMORROW))
    run_reminders(api)
    mail_server.handler.refuse.add("wo-1@customer.example")

    assert outbox.drain() == []  # permanent: acknowledged, not retried

    [notice] = mail_server.messages
    assert notice.rcpt_tos == ("owner@acme.example",)
    text = notice.parsed().get_body(("plain",)).get_content()
    assert "WO-1" in text and "recipient rejected" in text and "How to fix it" in text
    _, page, _ = api.call("GET", "/emails", query={"work_order_id": "WO-1"})
    [entry] = page["items"]
    assert entry["kind"] == "automation" and entry["automation"] == "reminder" and entry["status"] == "failed"
    assert entry["error"]["category"] == "recipient_rejected"
    assert outbox.drain() == [] and len(mail_server.messages) == 1


# --- status changes ------------------------------------------------------------------------------------


def test_en_route_queues_a_confirmation_with_the_technicians_photo(api, company, outbox, mail_server):
    import requests

    activate(api, "confirmation")
    photo = b"\xff\xd8\xff\xe0" + b"JFIF-photo" * 50
    _, ticket, _ = api.call(
        "POST",
        "/documents/uploads",
        {"filename": "luis.jpg", "content_type": "image/jpeg", "size": len(photo)},
    )
    requests.put(ticket["url"], data=photo, headers=ticket["headers"], timeout=10)
    sync(
        api,
        "WO-1",
        work_order(
            "WO-1", RUN_DATE, technician={"name": "Luis Ortega", "photo_upload_id": ticket["upload_id"]}
        ),
    )

    status, body, _ = api.call("POST", "/work-orders/WO-1/status", {"status": "en_route"})
    outbox.drain()

    assert status == 200 and body["email"] == {"queued": True, "reason": None, "automation": "confirmation"}
    assert body["work_order"]["status"] == "en_route"
    message = mail_server.messages[0].parsed()
    assert message["Subject"] == "Luis is on the way"
    related = message.get_body(("related",))
    image = next(p for p in related.iter_parts() if p.get_content_maintype() == "image")
    assert image["Content-ID"] == "<technician-photo>" and image.get_content() == photo
    assert 'src="cid:technician-photo"' in message.get_body(("html",)).get_content()


def test_completed_queues_a_thank_you(api, company, outbox, mail_server):
    activate(api, "thank_you")
    sync(api, "WO-1", work_order("WO-1", RUN_DATE, status="in_progress"))

    _, body, _ = api.call("POST", "/work-orders/WO-1/status", {"status": "completed"})
    outbox.drain()

    assert body["email"]["queued"] is True
    assert mail_server.messages[0].parsed()["Subject"] == "Thank you from Acme Plumbing"


@pytest.mark.parametrize(
    ("setup", "change", "reason"),
    [
        ({}, {"status": "en_route", "notify": False}, "notify was false"),
        ({"customer": {"contact_method": "text"}}, {"status": "en_route"}, "contact method is text"),
        ({"customer": {"contact_method": "none"}}, {"status": "en_route"}, "contact method is none"),
        ({"customer": {"email": None}}, {"status": "en_route"}, "no valid email address"),
        ({}, {"status": "in_progress"}, "no automated email is sent for status in_progress"),
        ({"status": "en_route"}, {"status": "en_route"}, "already en_route"),
    ],
)
def test_status_change_says_why_no_email_was_queued(api, company, outbox, mail_server, setup, change, reason):
    activate(api, "confirmation")
    sync(api, "WO-1", work_order("WO-1", RUN_DATE, **setup))

    status, body, _ = api.call("POST", "/work-orders/WO-1/status", change)

    assert status == 200 and body["email"]["queued"] is False and reason in body["email"]["reason"]
    outbox.drain()
    assert mail_server.messages == []


def test_inactive_confirmation_is_reported(api, company):
    sync(api, "WO-1", work_order("WO-1", RUN_DATE))

    _, body, _ = api.call("POST", "/work-orders/WO-1/status", {"status": "en_route"})

    assert body["email"] == {
        "queued": False,
        "reason": "the on-the-way confirmation email is inactive",
        "automation": None,
    }


def test_child_of_a_multi_day_order_is_confirmed_at_the_parents_address(api, company, outbox, mail_server):
    activate(api, "confirmation")
    sync(api, "WO-9", work_order("WO-9", RUN_DATE, customer={"email": "parent@customer.example"}))
    sync(
        api,
        "WO-9b",
        work_order(
            "WO-9b",
            RUN_DATE,
            parent_id="WO-9",
            customer={"email": "child@customer.example", "contact_method": "none"},
        ),
    )

    _, body, _ = api.call("POST", "/work-orders/WO-9b/status", {"status": "en_route"})
    outbox.drain()

    assert body["email"]["queued"] is True
    assert recipients(mail_server) == ["parent@customer.example"]


def test_unknown_work_order_status_change_is_404(api):
    assert api.call("POST", "/work-orders/WO-404/status", {"status": "en_route"})[0] == 404


def test_reminder_run_is_admin_only(api):
    assert api.call("POST", "/automations/reminder/run", {}, identity=USER)[0] == 403


def test_scheduled_run_covers_every_tenant_with_an_active_reminder(
    api, company, outbox, plans, mail_server, template, aws
):
    from datetime import date

    activate(api, "reminder")
    # The company's next run, as saving its settings kept it (today's noon, or tomorrow's).
    table = aws.resource("dynamodb").Table(template.names.ref("SettingsTable"))
    run = table.get_item(Key={"pk": "TENANT#demo", "sk": "SEND_SCHEDULE"})["Item"]
    run_date = date.fromisoformat(run["run_date"])
    sync(api, "WO-1", work_order("WO-1", run_date + timedelta(days=1)))
    sync(api, "WO-2", work_order("WO-2", run_date + timedelta(days=2)))
    tick = load_function(template, "ScheduleTickFunction")
    tick.services.cache_clear()

    event = {"scheduled_time": run["run_at"].replace("Z", ":00Z")}
    result = tick.lambda_handler(event, FakeContext())

    assert result == {"companies": 1, "queued": 1}
    assert plans.drain() == []
    outbox.drain()
    assert recipients(mail_server) == ["wo-1@customer.example"]
