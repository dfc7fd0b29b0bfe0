"""Each company's daily run at its own send time, through the real handlers on moto: the settings
PUT keeps the company's next run, ScheduleTickFunction queues a plan of each company whose run has
come, CompanyPlannerFunction plans it and moves it on, and the worker sends.

The clock is simulated: the tick takes its scheduled time from its event (as the schedule's input
gives it), and the planner's and the settings' "now" is set to the same time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from local.events import FakeContext, Identity
from tests.support.api import load_function
from tests.support.factories import smtp_settings, work_order

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "office@acme.example"
ZONES = {"chicago-co": "America/Chicago", "berlin-co": "Europe/Berlin", "sydney-co": "Australia/Sydney"}


class Clock:
    """The simulated time, shared by the settings, the tick and the planner."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(api, template, plans) -> Clock:
    clock = Clock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    for function in ("SettingsFunction", "CompanyPlannerFunction", "OAuthFunction"):
        load_function(template, function).services().send_schedule.now = clock
    return clock


@pytest.fixture
def tick(template, plans, clock) -> Iterator[Callable[[datetime], list[tuple[str, str]]]]:
    """A tick at `when`, then every plan it queued through the company planner; returns the
    (tenant, date) pairs it planned."""
    function = load_function(template, "ScheduleTickFunction")
    function.services.cache_clear()
    function.services().send_schedule.now = clock  # a company it adopts is adopted at the tick's time

    def at(when: datetime) -> list[tuple[str, str]]:
        clock.now = when
        event = {"scheduled_time": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        function.lambda_handler(event, FakeContext(function_name="ScheduleTickFunction"))
        messages = plans.receive()
        planned = sorted(
            (json.loads(m["Body"])["tenant_id"], json.loads(m["Body"])["date"]) for m in messages
        )
        if messages:
            assert plans.invoke(messages) == []
        return planned

    yield at
    function.services.cache_clear()


def company(api, tenant: str, port: int = 2525, **changes: Any) -> dict[str, Any]:
    identity = Identity(tenant_id=tenant, user_id=f"admin-{tenant}", email=f"admin@{tenant}.example")
    body = smtp_settings(ACCOUNT, PASSWORD, port=port, timezone=ZONES.get(tenant, "America/Chicago"))
    status, saved, _ = api.call("PUT", "/settings/company", body | changes, identity=identity)
    assert status == 200, saved
    return saved


def local_time(when: datetime, tenant: str) -> str:
    return when.astimezone(ZoneInfo(ZONES[tenant])).strftime("%Y-%m-%d %H:%M")


# --- the send time in the settings ------------------------------------------------------------------


def test_send_time_is_saved_and_shown_with_twelve_as_the_default(api, clock):
    assert company(api, "chicago-co")["send_time"] == "12:00"
    assert company(api, "chicago-co", send_time="07:45")["send_time"] == "07:45"
    status, shown, _ = api.call(
        "GET", "/settings/company", identity=Identity("chicago-co", "admin-chicago-co", "a@b.example")
    )
    assert status == 200 and shown["send_time"] == "07:45"


@pytest.mark.parametrize("value", ["12:05", "25:00", "noon", 1200])
def test_a_send_time_off_the_quarter_hour_grid_is_a_422_naming_send_time(api, clock, value):
    body = smtp_settings(ACCOUNT, PASSWORD, port=2525) | {"send_time": value}
    status, problem, _ = api.call("PUT", "/settings/company", body)
    assert status == 422 and [e["field"] for e in problem["errors"]] == ["send_time"], problem


def test_only_company_settings_have_a_send_time(api, clock):
    body = smtp_settings(ACCOUNT, PASSWORD, port=2525) | {"send_time": "09:00"}
    status, problem, _ = api.call("PUT", "/settings/me", body)
    assert status == 422 and problem["errors"][0]["field"] == "send_time", problem


# --- the tick, in three time zones across both daylight-saving changes --------------------------------


def quarter_hours(first: datetime, last: datetime) -> Iterator[datetime]:
    while first <= last:
        yield first
        first += timedelta(minutes=15)


@pytest.mark.parametrize(
    ("tenant", "first_day", "days"),
    [
        ("chicago-co", date(2026, 3, 6), 4),  # CST to CDT on March 8
        ("chicago-co", date(2026, 10, 30), 4),  # CDT to CST on November 1
        ("berlin-co", date(2026, 3, 27), 4),  # CET to CEST on March 29
        ("berlin-co", date(2026, 10, 23), 4),  # CEST to CET on October 25
        ("sydney-co", date(2026, 4, 3), 4),  # AEDT to AEST on April 5
        ("sydney-co", date(2026, 10, 2), 4),  # AEST to AEDT on October 4
    ],
)
def test_each_company_runs_once_a_day_at_its_local_send_time_across_the_change(
    api, clock, tick, tenant, first_day, days
):
    zone = ZoneInfo(ZONES[tenant])
    clock.now = datetime.combine(first_day, datetime.min.time(), tzinfo=zone).astimezone(UTC)
    company(api, tenant)  # saved at local midnight: its first run is that day at noon
    runs: dict[str, str] = {}
    for offset in range(days):
        noon = datetime.combine(first_day + timedelta(days=offset), datetime.min.time(), tzinfo=zone)
        noon = noon.replace(hour=12).astimezone(UTC)
        # quarter-hour ticks from two hours before local noon (in either offset) to two after
        for when in quarter_hours(noon - timedelta(hours=2), noon + timedelta(hours=2)):
            for planned_tenant, planned_date in tick(when):
                assert planned_tenant == tenant and planned_date not in runs, (when, runs)
                runs[planned_date] = local_time(when, tenant)
    expected = [(first_day + timedelta(days=k)).isoformat() for k in range(days)]
    assert sorted(runs) == expected
    assert set(runs.values()) == {f"{day} 12:00" for day in expected}, runs


def test_a_missed_tick_is_caught_up_later_the_same_day_and_never_doubled(api, clock, tick):
    clock.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    company(api, "chicago-co")  # noon in Chicago is 18:00 UTC in December
    assert tick(datetime(2026, 12, 1, 17, 45, tzinfo=UTC)) == []
    # the schedule is down from 18:00 to 20:45 UTC
    assert tick(datetime(2026, 12, 1, 21, 0, tzinfo=UTC)) == [("chicago-co", "2026-12-01")]
    later = [tick(datetime(2026, 12, 1, 21, 15, tzinfo=UTC) + timedelta(minutes=15 * k)) for k in range(8)]
    assert later == [[]] * 8
    assert tick(datetime(2026, 12, 2, 18, 0, tzinfo=UTC)) == [("chicago-co", "2026-12-02")]


def test_after_days_of_outage_each_missed_day_is_planned_once_in_turn(api, clock, tick):
    clock.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    company(api, "chicago-co")
    planned = [tick(datetime(2026, 12, 3, 19, 0, tzinfo=UTC) + timedelta(minutes=15 * k)) for k in range(5)]
    assert planned == [
        [("chicago-co", "2026-12-01")],
        [("chicago-co", "2026-12-02")],
        [("chicago-co", "2026-12-03")],
        [],
        [],
    ]


def test_a_changed_send_time_moves_the_pending_run_and_skips_no_day(api, clock, tick):
    clock.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    company(api, "chicago-co")  # pending: December 1 at 18:00 UTC
    clock.now = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)  # 13:00 in Chicago, before any tick ran
    company(api, "chicago-co", send_time="16:30")
    assert tick(datetime(2026, 12, 1, 22, 15, tzinfo=UTC)) == []
    assert tick(datetime(2026, 12, 1, 22, 30, tzinfo=UTC)) == [("chicago-co", "2026-12-01")]


def test_a_company_whose_run_has_not_come_is_not_read(api, clock, tick, aws, template):
    clock.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    company(api, "chicago-co")  # 18:00 UTC
    company(api, "berlin-co")  # 11:00 UTC
    assert tick(datetime(2026, 12, 1, 11, 0, tzinfo=UTC)) == [("berlin-co", "2026-12-01")]


# --- what the customer sees ----------------------------------------------------------------------------


def test_the_scheduled_run_sends_the_reminder_once_even_when_the_tick_fires_twice(
    api, clock, template, plans, outbox, smtp_server, trust_local_ca
):
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD})
    identity = Identity(tenant_id="chicago-co", user_id="admin-chicago-co", email="admin@chicago-co.example")
    clock.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    company(api, "chicago-co", port=server.port)
    activate_as(api, identity)
    body = work_order("WO-1", date(2026, 12, 2))
    status, _, _ = api.call("PUT", "/work-orders/WO-1", body, identity=identity)
    assert status == 200

    function = load_function(template, "ScheduleTickFunction")
    function.services.cache_clear()
    event = {"scheduled_time": "2026-12-01T18:00:00Z"}
    clock.now = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    for _ in range(2):  # the schedule's retry, or two ticks before the planner ran
        function.lambda_handler(event, FakeContext(function_name="ScheduleTickFunction"))
    messages = plans.receive()
    assert len(messages) == 2
    for message in messages:  # and the same plan delivered again after both
        assert plans.invoke([message]) == []
    assert outbox.drain() == []

    assert [m.parsed()["To"] for m in server.messages] == ["wo-1@customer.example"]
    assert plans.receive() == []


def activate_as(api, identity: Identity) -> None:
    _, current, _ = api.call("GET", "/automations/reminder", identity=identity)
    body = {k: current[k] for k in ("subject", "body_html", "days_before")} | {"active": True}
    status, saved, _ = api.call("PUT", "/automations/reminder", body, identity=identity)
    assert status == 200, saved


def test_a_company_saved_before_send_times_existed_gets_its_run_on_the_hour(api, clock, tick, aws, template):
    clock.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    company(api, "chicago-co")
    identity = Identity(tenant_id="chicago-co", user_id="admin-chicago-co", email="admin@chicago-co.example")
    activate_as(api, identity)
    table = aws.resource("dynamodb").Table(template.names.ref("SettingsTable"))
    table.delete_item(Key={"pk": "TENANT#chicago-co", "sk": "SEND_SCHEDULE"})  # as before this release

    assert tick(datetime(2026, 12, 1, 9, 30, tzinfo=UTC)) == []  # not on the hour: not adopted yet
    assert "Item" not in table.get_item(Key={"pk": "TENANT#chicago-co", "sk": "SEND_SCHEDULE"})
    assert tick(datetime(2026, 12, 1, 10, 0, tzinfo=UTC)) == []  # adopted: today's noon is to come
    assert tick(datetime(2026, 12, 1, 18, 0, tzinfo=UTC)) == [("chicago-co", "2026-12-01")]


def test_a_plan_delivered_again_after_its_run_plans_nothing(
    api, clock, template, plans, outbox, smtp_server, trust_local_ca
):
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD})
    identity = Identity(tenant_id="chicago-co", user_id="admin-chicago-co", email="admin@chicago-co.example")
    clock.now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    company(api, "chicago-co", port=server.port)
    activate_as(api, identity)
    status, _, _ = api.call(
        "PUT", "/work-orders/WO-1", work_order("WO-1", date(2026, 12, 2)), identity=identity
    )
    assert status == 200
    function = load_function(template, "ScheduleTickFunction")
    function.services.cache_clear()
    clock.now = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
    function.lambda_handler({"scheduled_time": "2026-12-01T18:00:00Z"}, FakeContext())
    [message] = plans.receive()

    assert plans.invoke([message]) == []  # planned: one reminder queued, the run moves on
    assert len(outbox.receive()) == 1
    assert plans.worker.lambda_handler(plans.event([message]), FakeContext())["batchItemFailures"] == []
    assert outbox.receive() == []  # the same plan again: nothing queued twice
