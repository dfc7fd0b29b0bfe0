"""Properties of what stands between a request and a 500: the body's JSON reader, the date bounds of
work orders and reminder runs, and the rendering of a work order's times, for any input.

1. mailer.api.request_json returns what json.loads returns, or refuses with a RequestValidationError
   naming `body`: whatever the nesting (1 to 100,000 levels) or the length of a number. Nothing else
   escapes it (RecursionError, ValueError from int()).
2. WorkOrderInput accepts a time in the years 2000 to 2100 and refuses any other naming its field;
   ReminderRun likewise for its date, and a date it accepts plus the largest days_before stays a date.
3. work_order_context renders any stored aware time in any zone, year 1 and 9999 included.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mailer.api import MAX_JSON_DEPTH, MAX_NUMBER_DIGITS, request_json
from mailer.automations.models import ReminderRun
from mailer.work_orders.models import FIRST_YEAR, LAST_YEAR, WorkOrder, WorkOrderInput, work_order_context

SETTINGS = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
ZONES = [ZoneInfo(z) for z in ("UTC", "Pacific/Kiritimati", "Etc/GMT+12", "America/Chicago", "Asia/Kolkata")]
# Every offset a datetime can carry: strictly within a day either way.
OFFSETS = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
AWARE = st.datetimes(timezones=OFFSETS)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def refused_body(call) -> str:
    with pytest.raises(RequestValidationError) as refused:
        call()
    [error] = refused.value.errors()
    assert error["loc"] == ("body",)
    return error["msg"]


# --- 1. the JSON reader ------------------------------------------------------------------------------


@SETTINGS
@given(value=JSON_VALUES)
def test_json_of_ordinary_depth_reads_as_json_loads_reads_it(value):
    text = json.dumps(value)

    assert request_json(text) == json.loads(text)


@SETTINGS
@given(
    levels=st.integers(min_value=1, max_value=100_000), kinds=st.text(alphabet="[{", min_size=1, max_size=8)
)
@example(levels=MAX_JSON_DEPTH, kinds="[")
@example(levels=MAX_JSON_DEPTH + 1, kinds="{")
@example(levels=100_000, kinds="[")
@example(levels=100_000, kinds="{")
def test_any_nesting_is_read_or_refused_naming_the_body(levels, kinds):
    opening = "".join('{"a":' if kinds[i % len(kinds)] == "{" else "[" for i in range(levels))
    closing = "".join("}" if kinds[i % len(kinds)] == "{" else "]" for i in reversed(range(levels)))
    text = opening + "0" + closing

    if levels <= MAX_JSON_DEPTH:
        assert depth(request_json(text)) == levels
    else:
        assert "levels deep" in refused_body(lambda: request_json(text))


@SETTINGS
@given(
    digits=st.integers(min_value=1, max_value=6000),
    shape=st.sampled_from(["{}", "-{}", "{}.5", "1.{}", "{}e3", "0.{}E-7"]),
)
@example(digits=MAX_NUMBER_DIGITS, shape="{}")
@example(digits=5000, shape="{}")
def test_any_number_is_read_or_refused_naming_the_body(digits, shape):
    number = shape.format("7" * digits)
    text = '{"n": ' + number + "}"

    if len(number) <= MAX_NUMBER_DIGITS:
        assert request_json(text) == json.loads(text)
    else:
        assert "digits" in refused_body(lambda: request_json(text))


# --- 2. date bounds --------------------------------------------------------------------------------


def work_order_body(**times: str) -> dict:
    customer = {"name": "Dana", "email": "dana@customer.example", "contact_method": "email"}
    return {"number": "WO-1", "customer": customer} | times


@SETTINGS
@given(when=AWARE, field=st.sampled_from(["scheduled_start", "scheduled_end"]))
@example(when=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), field="scheduled_start")
@example(when=datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-12))), field="scheduled_end")
@example(when=datetime(2000, 1, 1, tzinfo=timezone(timedelta(hours=14))), field="scheduled_start")
@example(when=datetime(2100, 12, 31, 23, 59, tzinfo=timezone(timedelta(hours=-12))), field="scheduled_end")
def test_a_work_order_time_is_accepted_in_2000_to_2100_and_refused_naming_it_otherwise(when, field):
    times = {"scheduled_start": "2026-11-24T09:00:00-06:00", field: when.isoformat()}

    if FIRST_YEAR <= when.year <= LAST_YEAR:
        assert getattr(WorkOrderInput.model_validate(work_order_body(**times)), field) == when
    else:
        with pytest.raises(ValidationError) as refused:
            WorkOrderInput.model_validate(work_order_body(**times))
        assert [e["loc"] for e in refused.value.errors()] == [(field,)]


@SETTINGS
@given(day=st.dates())
@example(day=date(9999, 12, 31))
@example(day=date(1, 1, 1))
@example(day=date(LAST_YEAR, 12, 31))
def test_a_reminder_run_date_is_accepted_in_2000_to_2100_and_refused_naming_it_otherwise(day):
    if FIRST_YEAR <= day.year <= LAST_YEAR:
        run = ReminderRun.model_validate({"date": day.isoformat()})
        assert run.date is not None and run.date + timedelta(days=30) > day  # days_before is at most 30
    else:
        with pytest.raises(ValidationError) as refused:
            ReminderRun.model_validate({"date": day.isoformat()})
        assert [e["loc"] for e in refused.value.errors()] == [("date",)]


# --- 3. rendering stored times ------------------------------------------------------------------------


@SETTINGS
@given(start=AWARE, end=st.none() | AWARE, zone=st.sampled_from(ZONES))
@example(start=datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14))), end=None, zone=ZONES[2])
@example(start=datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-12))), end=None, zone=ZONES[1])
def test_any_stored_time_renders_in_any_zone(start, end, zone):
    stored = WorkOrder.model_validate(
        work_order_body(scheduled_start=start.isoformat(), scheduled_end=end.isoformat() if end else None)
        | {"id": "WO-1"}
    )

    fields = work_order_context(stored, zone, photo=False)["work_order"]

    year = int(fields["scheduled_date"].rsplit(", ", 1)[1])
    assert abs(year - start.year) <= 1  # as sent, or moved at most a day
    if datetime(FIRST_YEAR, 1, 1, tzinfo=UTC) <= start <= datetime(LAST_YEAR, 12, 31, tzinfo=UTC):
        local = start.astimezone(zone)
        assert fields["scheduled_date"] == f"{local:%B} {local.day}, {local.year}"
