"""A company's send time in its own time zone: the UTC instant of each local date's run, across both
daylight-saving changes in three zones (two northern, one southern), and the grid the time is on."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import TypeAdapter, ValidationError

from mailer.settings.send_time import CATCH_UP_DAYS, SendTime, after, first_run, run_at, same_day

CHICAGO, BERLIN, SYDNEY = ZoneInfo("America/Chicago"), ZoneInfo("Europe/Berlin"), ZoneInfo("Australia/Sydney")


@pytest.mark.parametrize(
    ("zone", "day", "utc"),
    [
        # Chicago: CST (UTC-6) until 2026-03-08, CDT (UTC-5) until 2026-11-01.
        (CHICAGO, date(2026, 3, 7), "2026-03-07T18:00"),
        (CHICAGO, date(2026, 3, 8), "2026-03-08T17:00"),
        (CHICAGO, date(2026, 10, 31), "2026-10-31T17:00"),
        (CHICAGO, date(2026, 11, 1), "2026-11-01T18:00"),
        # Berlin: CET (UTC+1) until 2026-03-29, CEST (UTC+2) until 2026-10-25.
        (BERLIN, date(2026, 3, 28), "2026-03-28T11:00"),
        (BERLIN, date(2026, 3, 29), "2026-03-29T10:00"),
        (BERLIN, date(2026, 10, 24), "2026-10-24T10:00"),
        (BERLIN, date(2026, 10, 25), "2026-10-25T11:00"),
        # Sydney, the other way round: AEDT (UTC+11) until 2026-04-05, AEST (UTC+10) from then
        # until 2026-10-04.
        (SYDNEY, date(2026, 4, 4), "2026-04-04T01:00"),
        (SYDNEY, date(2026, 4, 5), "2026-04-05T02:00"),
        (SYDNEY, date(2026, 10, 3), "2026-10-03T02:00"),
        (SYDNEY, date(2026, 10, 4), "2026-10-04T01:00"),
    ],
)
def test_noon_is_noon_local_on_both_sides_of_each_change(zone, day, utc):
    assert run_at(day, "12:00", zone).strftime("%Y-%m-%dT%H:%M") == utc


def test_a_time_in_the_spring_gap_runs_an_hour_later_and_a_repeated_time_runs_at_its_first():
    # 2026-03-08 02:30 does not exist in Chicago; 2026-11-01 01:30 happens twice there.
    gap = run_at(date(2026, 3, 8), "02:30", CHICAGO)
    assert gap.astimezone(CHICAGO).strftime("%H:%M") == "03:30"
    twice = run_at(date(2026, 11, 1), "01:30", CHICAGO)
    assert twice == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)  # 01:30 CDT, the first of the two


def test_the_first_run_is_today_while_the_send_time_is_still_to_come():
    morning = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 09:00 in Chicago
    evening = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # 17:00 in Chicago
    assert first_run("12:00", CHICAGO, morning).run_date == date(2026, 12, 1)
    assert first_run("12:00", CHICAGO, evening).run_date == date(2026, 12, 2)
    late = datetime(2026, 12, 2, 4, 0, tzinfo=UTC)  # still 22:00 on December 1 in Chicago
    assert first_run("23:45", CHICAGO, late).run_date == date(2026, 12, 1)


def test_a_changed_send_time_keeps_the_pending_date_and_the_next_run_is_the_next_day():
    pending = same_day(date(2026, 12, 1), "08:00", CHICAGO)
    assert (pending.run_date, pending.key) == (date(2026, 12, 1), "2026-12-01T14:00Z")
    now = datetime(2026, 12, 1, 18, 5, tzinfo=UTC)
    following = after(date(2026, 12, 1), "12:00", CHICAGO, now)
    assert (following.run_date, following.key) == (date(2026, 12, 2), "2026-12-02T18:00Z")


def test_after_a_long_outage_only_the_last_days_are_made_up():
    now = datetime(2026, 12, 31, 18, 0, tzinfo=UTC)
    following = after(date(2026, 12, 1), "12:00", CHICAGO, now)
    assert following.run_date == date(2026, 12, 31) - timedelta(days=CATCH_UP_DAYS)


@pytest.mark.parametrize("value", ["12:00", "00:00", "23:45", "07:15"])
def test_send_times_on_the_quarter_hour_are_accepted(value):
    assert TypeAdapter(SendTime).validate_python(value) == value


@pytest.mark.parametrize("value", ["12:05", "24:00", "7:00", "12:00:00", "noon", ""])
def test_other_send_times_are_refused(value):
    with pytest.raises(ValidationError):
        TypeAdapter(SendTime).validate_python(value)
