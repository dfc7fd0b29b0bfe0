"""Templates are bounded: what a user meets through the API and the outbox when wording would loop,
repeat or print without end. Refused when saved (422 naming the field); when only real values make
it too big, the preview answers 422 and the automated email fails once, for good, and is reported.
"""

from __future__ import annotations

import pytest

from local.smtp_server import RecordingHandler
from tests.support.factories import OWNER, TOMORROW, company_settings, work_order
from tests.support.steps import activate, run_reminders, sync

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "office@acme.example"
PROBLEM_JSON = "application/problem+json"

NESTED_LOOPS = (
    "{% for a in range(100) %}{% for b in range(100) %}{% for c in range(100) %}"
    "{% endfor %}{% endfor %}{% endfor %}"
)
HUGE_REPEAT = "<p>{{ 'x' * 10**7 }}</p>"
BIG_RANGE = "{% for i in range(5000) %}<br>{% endfor %}"
BIG_OUTPUT = "{% for i in range(1000) %}<p>{{ 'x' * 2000 }}</p>{% endfor %}"
SIZED_BY_WORK_ORDER = (
    "{% for i in range(work_order.number|int) %}<p>Hello {{ customer.name }}</p>{% endfor %}"
)
SIZED_BY_DOCUMENT = "{% for i in range(document.number|int) %}<p>{{ document.number }}</p>{% endfor %}"

CASES = [
    pytest.param(NESTED_LOOPS, "loops may run at most 10,000 times in all", id="nested-loops"),
    pytest.param(HUGE_REPEAT, "`*` would build a value larger than 1 MB", id="repetition"),
    pytest.param(BIG_RANGE, "range() may give at most 1,000 items (asked for 5,000)", id="range"),
    pytest.param(BIG_OUTPUT, "the template's output would exceed 1 MB", id="output"),
]


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=RecordingHandler())


@pytest.fixture
def company(api, trust_local_ca, mail_server):
    settings = company_settings(ACCOUNT, PASSWORD, port=mail_server.port)
    assert api.call("PUT", "/settings/company", settings)[0] == 200
    return settings


def assert_problem(status, body, headers, field, words):
    assert status == 422, body
    assert headers["content-type"] == PROBLEM_JSON and body["status"] == 422
    [error] = body["errors"]
    assert error["field"] == field and words in error["message"]
    assert body["detail"] == f"{field}: {error['message']}"


def store_directly(aws, sort_key, item):
    """Wording saved before templates were bounded: the save-time check never saw it."""
    table = aws.resource("dynamodb").Table("local-SettingsTable")
    table.put_item(Item={"pk": "TENANT#demo", "sk": sort_key, **item})


# --- refused when saved -------------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "words"), CASES)
def test_automation_wording_over_a_bound_is_refused_at_save_naming_the_field(api, source, words):
    status, body, headers = api.call("PUT", "/automations/reminder", {"subject": "s", "body_html": source})

    assert_problem(status, body, headers, "body_html", words)
    assert api.call("GET", "/automations/reminder")[1]["is_default"] is True


def test_a_subject_over_a_bound_is_refused_naming_the_subject(api):
    status, body, headers = api.call(
        "PUT", "/automations/thank_you", {"subject": "{{ company.name * 100000 }}", "body_html": "<p>b</p>"}
    )

    assert_problem(status, body, headers, "subject", "`*` would build a value larger than 1 MB")


def test_wording_nested_too_deeply_is_422_not_500(api):
    nested = "<p>{{ " + "(" * 3000 + "customer.name" + ")" * 3000 + " }}</p>"

    status, body, headers = api.call("PUT", "/automations/reminder", {"subject": "s", "body_html": nested})

    assert_problem(status, body, headers, "body_html", "nested too deeply")


@pytest.mark.parametrize(("source", "words"), CASES)
def test_document_wording_over_a_bound_is_refused_at_save_naming_the_field(api, source, words):
    status, body, headers = api.call(
        "PUT", "/document-templates/invoice", {"subject": "Invoice", "body_html": source}
    )

    assert_problem(status, body, headers, "body_html", words)


# --- too big only with real values: the preview -------------------------------------------------------


def test_a_loop_sized_by_a_merge_field_is_saved_but_its_preview_is_422_not_500(api):
    activate(api, "reminder", body_html=SIZED_BY_WORK_ORDER)  # the sample WO-1001 gives no items
    sync(api, "WO-1", work_order("3", TOMORROW, customer={"name": "Dana Whitfield"}))
    sync(api, "WO-2", work_order("5000", TOMORROW))

    status, small, _ = api.call("POST", "/automations/reminder/preview", {"work_order_id": "WO-1"})
    assert status == 200 and small["html"] == "<p>Hello Dana Whitfield</p>" * 3

    status, body, headers = api.call("POST", "/automations/reminder/preview", {"work_order_id": "WO-2"})
    assert_problem(
        status, body, headers, "body_html", "range() may give at most 1,000 items (asked for 5,000)"
    )


@pytest.mark.parametrize(("source", "words"), CASES)
def test_wording_saved_before_the_bounds_previews_as_422_not_500(api, aws, source, words):
    store_directly(
        aws,
        "AUTOMATION#reminder",
        {"active": False, "subject": "Visit", "body_html": source, "days_before": 1, "is_default": False},
    )

    status, body, headers = api.call("POST", "/automations/reminder/preview", {})

    assert_problem(status, body, headers, "body_html", words)


def test_a_document_preview_over_a_bound_is_422_not_500(api, company):
    saved = api.call(
        "PUT", "/document-templates/invoice", {"subject": "Invoice", "body_html": SIZED_BY_DOCUMENT}
    )
    assert saved[0] == 200, saved[1]  # the sample INV-1001 gives no items
    invoice = {"type": "invoice", "number": "2", "customer_name": "Dana Whitfield"}

    status, small, _ = api.call("POST", "/documents/preview", {"document": invoice})
    assert status == 200 and small["html"] == "<p>2</p><p>2</p>"

    status, body, headers = api.call("POST", "/documents/preview", {"document": invoice | {"number": "5000"}})
    assert_problem(
        status, body, headers, "body_html", "range() may give at most 1,000 items (asked for 5,000)"
    )


def test_a_document_email_over_a_bound_is_422_and_nothing_is_sent(api, company, mail_server):
    api.call("PUT", "/document-templates/invoice", {"subject": "Invoice", "body_html": SIZED_BY_DOCUMENT})
    request = {"document": {"type": "invoice", "number": "5000"}, "to": ["dana@customer.example"]}

    status, body, headers = api.call("POST", "/documents/email", request)

    assert_problem(status, body, headers, "body_html", "range() may give at most 1,000 items")
    assert mail_server.messages == []


# --- too big only with real values: the outbox worker -------------------------------------------------


def test_automated_email_over_a_bound_fails_for_good_is_reported_once_and_never_retried(
    api, company, outbox, mail_server
):
    activate(api, "reminder", body_html=SIZED_BY_WORK_ORDER)
    sync(api, "WO-1", work_order("5000", TOMORROW))
    assert run_reminders(api) == 1

    assert outbox.drain() == []  # acknowledged: not left for a redelivery

    [notice] = mail_server.messages
    assert notice.rcpt_tos == (OWNER,)
    text = notice.parsed().get_body(("plain",)).get_content()
    assert "5000" in text and "TemplateLimitExceeded" in text and "/automations/reminder" in text
    _, page, _ = api.call("GET", "/emails", query={"work_order_id": "WO-1"})
    [entry] = page["items"]
    assert entry["status"] == "failed" and entry["error"]["category"] == "template_error"
    assert entry["error"]["stage"] == "render" and entry["error"]["transient"] is False

    run_reminders(api)  # the next noon run: the ledger knows it failed, nobody is told twice
    assert outbox.drain() == [] and len(mail_server.messages) == 1
