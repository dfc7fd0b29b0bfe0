"""Requests that once got a 500: each is a problem+json 4xx naming what is wrong (API.md: no request,
however malformed, gets a 500).

1. JSON nested far deeper than any body of this API (the parser's recursion limit).
2. A JSON body sent as text/plain, fetch()'s default for a string body: 415, not parsed.
3. A number with thousands of digits (Python's limit on converting digits to an int).
4. Work orders dated in year 1 or 9999: refused at sync; one stored before that still renders.
5. A reminder run for a date so late that the day of the appointments overflows.
"""

from __future__ import annotations

import json
import os
from datetime import date

import pytest

from mailer.dal.work_orders_table import WorkOrderStore
from mailer.work_orders.models import WorkOrder
from tests.support.factories import TOMORROW, company_settings, work_order
from tests.support.steps import activate, sync

PROBLEM_JSON = "application/problem+json"
PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "office@acme.example"
DEPTH = 100_000

# One route with a body in each function of the template.
BODY_ROUTES = [
    ("PUT", "/work-orders/WO-1"),
    ("PUT", "/settings/company"),
    ("POST", "/settings/test"),
    ("POST", "/documents/email"),
    ("POST", "/oauth/microsoft/start"),
]
DEEP_BODIES = {
    "array": "[" * DEPTH + "]" * DEPTH,
    "object": '{"a":' * DEPTH + "null" + "}" * DEPTH,
    "in a field": '{"number": ' + "[" * DEPTH + "]" * DEPTH + "}",
    # Parsed by json.loads, then too deep for anything that walks it recursively.
    "5000 levels": '{"a":' * 5000 + "1" + "}" * 5000,
}
LONG_NUMBERS = {
    "integer": '{"number": ' + "9" * 5000 + "}",
    "negative": '{"number": -' + "9" * 5000 + "}",
    "fraction": '{"number": 1' + "0" * 5000 + ".5}",
    "exponent": '{"number": 1.' + "0" * 5000 + "e3}",
}
# As the reminder's default wording shows them: the time as sent, when no zone can hold it.
STORED_DATES = {
    "0001-01-01T00:00:00+14:00": "January 1, 1 at 12:00 AM",
    "9999-12-31T23:00:00-12:00": "December 31, 9999 at 11:00 PM",
}
EXTREME_TIMES = [
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:00:00-12:00",
    "1999-12-31T23:59:59+00:00",
    "2101-01-01T00:00:00Z",
]


def assert_problem(answer, status: int, field: str, words: str = "") -> None:
    code, body, headers = answer
    assert code == status, body
    assert headers["content-type"] == PROBLEM_JSON
    assert body["status"] == status
    assert [e["field"] for e in body["errors"]] == [field], body
    assert words in body["errors"][0]["message"], body


# --- 1. nesting -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", list(DEEP_BODIES))
@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_json_nested_too_deep_is_422_naming_the_body(api, method, path, shape):
    answer = api.call(method, path, raw_body=DEEP_BODIES[shape])

    assert_problem(answer, 422, "body", "levels deep")


def test_ordinary_nesting_is_still_validated_field_by_field(api):
    status, body, _ = api.call("PUT", "/work-orders/WO-1", raw_body='{"customer": [[[[[]]]]]}')

    assert status == 422
    assert "customer" in [e["field"] for e in body["errors"]]


# --- 2. Content-Type --------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize("content_type", ["text/plain;charset=UTF-8", "text/plain", "application/xml"])
def test_a_body_that_is_not_declared_json_is_415_naming_the_body(api, method, path, content_type):
    answer = api.call(method, path, raw_body="{}", headers={"content-type": content_type})

    assert_problem(answer, 415, "body", "application/json")
    assert content_type.split(";")[0] in answer[1]["detail"]


@pytest.mark.parametrize("content_type", ["Application/JSON", "application/json; charset=UTF-8"])
def test_json_content_types_in_any_case_are_json(api, content_type):
    status, body, _ = api.call(
        "PUT", "/work-orders/WO-1", work_order("WO-1", TOMORROW), headers={"content-type": content_type}
    )

    assert status == 200, body


# --- 3. long numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(LONG_NUMBERS))
@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
def test_a_number_with_thousands_of_digits_is_422_naming_the_body(api, method, path, kind):
    answer = api.call(method, path, raw_body=LONG_NUMBERS[kind])

    assert_problem(answer, 422, "body", "digits")


def test_a_long_but_convertible_number_is_refused_naming_its_field(api):
    body = company_settings(ACCOUNT, PASSWORD, port=587)
    raw = json_with(body, port="9" * 100)

    status, problem, _ = api.call("PUT", "/settings/company", raw_body=raw)

    assert status == 422
    assert [e["field"] for e in problem["errors"]] == ["port"]


def json_with(body: dict, **raw_values: str) -> str:
    """`body` as JSON, with some members written as raw JSON text (numbers json.dumps cannot write)."""
    text = json.dumps({k: v for k, v in body.items() if k not in raw_values})
    members = "".join(f', "{k}": {v}' for k, v in raw_values.items())
    return text[:-1] + members + "}"


# --- 4. work orders in year 1 or 9999 ---------------------------------------------------------------


@pytest.mark.parametrize("when", EXTREME_TIMES)
@pytest.mark.parametrize("field", ["scheduled_start", "scheduled_end"])
def test_a_work_order_outside_2000_to_2100_is_422_naming_the_field(api, field, when):
    body = work_order("WO-1", TOMORROW) | {field: when}

    answer = api.call("PUT", "/work-orders/WO-1", body)

    assert_problem(answer, 422, field, "2000")
    assert api.call("GET", "/work-orders/WO-1")[0] == 404


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2000-01-01T00:00:00+14:00", "2000-01-01T01:00:00+14:00"),
        ("2100-12-31T22:00:00-12:00", "2100-12-31T23:59:59-12:00"),
    ],
)
def test_the_first_and_last_days_of_the_range_are_synced_and_previewed(api, start, end):
    sync(api, "WO-1", work_order("WO-1", TOMORROW, scheduled_start=start, scheduled_end=end))

    status, preview, _ = api.call("POST", "/automations/reminder/preview", {"work_order_id": "WO-1"})

    assert status == 200, preview
    assert "Customer" in preview["html"]


def store_as_synced_before_the_range(work_order_id: str, when: str) -> None:
    """A work order saved before the range was enforced: the table may still hold one."""
    body = work_order(work_order_id, TOMORROW, scheduled_start=when, scheduled_end=None)
    WorkOrderStore(os.environ["WORK_ORDERS_TABLE"]).put(
        "demo", WorkOrder.model_validate(body | {"id": work_order_id})
    )


@pytest.mark.parametrize("when", list(STORED_DATES))
def test_a_stored_work_order_in_year_1_or_9999_is_read_and_previewed(api, when):
    store_as_synced_before_the_range("WO-OLD", when)

    assert api.call("GET", "/work-orders/WO-OLD")[0] == 200
    status, preview, _ = api.call("POST", "/automations/reminder/preview", {"work_order_id": "WO-OLD"})

    assert status == 200, preview
    assert STORED_DATES[when] in preview["html"]


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


@pytest.mark.parametrize("when", list(STORED_DATES))
def test_a_stored_work_order_in_year_1_or_9999_still_gets_its_confirmation(
    api, trust_local_ca, mail_server, outbox, when
):
    assert (
        api.call("PUT", "/settings/company", company_settings(ACCOUNT, PASSWORD, port=mail_server.port))[0]
        == 200
    )
    activate(api, "confirmation")
    store_as_synced_before_the_range("WO-OLD", when)

    status, changed, _ = api.call("POST", "/work-orders/WO-OLD/status", {"status": "en_route"})

    assert status == 200 and changed["email"]["queued"] is True, changed
    assert outbox.drain() == []
    # To the customer; a template error would have gone to the company's notify address instead.
    assert [list(m.rcpt_tos) for m in mail_server.messages] == [["wo-old@customer.example"]]


# --- 5. the reminder run's date ---------------------------------------------------------------------


@pytest.mark.parametrize("run_date", ["9999-12-31", "9999-12-30", "0001-01-01", "2101-01-01", "1999-12-31"])
def test_a_reminder_run_outside_2000_to_2100_is_422_naming_the_date(api, run_date):
    activate(api, "reminder", days_before=30)

    answer = api.call("POST", "/automations/reminder/run", {"date": run_date})

    assert_problem(answer, 422, "date", "2000")


@pytest.mark.parametrize("run_date", [date(2000, 1, 1), date(2100, 12, 31)])
def test_a_reminder_run_at_either_end_of_the_range_runs(api, run_date):
    activate(api, "reminder", days_before=30)

    status, body, _ = api.call("POST", "/automations/reminder/run", {"date": run_date.isoformat()})

    assert (status, body) == (200, {"queued": 0})
