"""A company's daily send time: when, in its own time zone, the scheduled runs happen.

The runs (work-order reminders, invoice reminders, statements) happen once a day per company at its
`send_time` (HH:MM on a 15-minute grid, default 12:00) in its `timezone`. Each company's next run is
kept as one item, `(run_date, run_at)`: the local date to plan and the UTC instant of that date's
send time. A schedule tick every 15 minutes takes the companies whose `run_at` has come, through an
index sorted by `run_at`, so it reads only those and finds a run that a stopped schedule missed just
the same. After a company's run its item moves on to the next local date's instant, computed for
that date, so daylight-saving changes move the UTC instant and never the local time.

Local times that do not exist (the hour skipped in spring) run at the same offset as before the
change (02:30 becomes 03:30); a local time that happens twice (in autumn) runs at the first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import AfterValidator

DEFAULT_SEND_TIME = "12:00"
SLOT_MINUTES = 15
CATCH_UP_DAYS = 7  # a run missed longer ago than this is not made up (the tick was down a week)
_HH_MM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _on_the_grid(value: str) -> str:
    match = _HH_MM.match(value)
    if match is None:
        raise ValueError('must be a time of day written as HH:MM, such as "12:00"')
    if int(match.group(2)) % SLOT_MINUTES:
        raise ValueError("must be on the quarter hour (:00, :15, :30 or :45)")
    return value


SendTime = Annotated[str, AfterValidator(_on_the_grid)]


@dataclass(frozen=True)
class NextRun:
    run_date: date  # the local date the run plans
    run_at: datetime  # when it happens, in UTC

    @property
    def key(self) -> str:
        """`run_at` as the index sorts it: 2026-12-01T18:00Z."""
        return self.run_at.strftime("%Y-%m-%dT%H:%MZ")


def run_at(day: date, send_time: str, zone: ZoneInfo) -> datetime:
    """The UTC instant of `send_time` on the local `day` in `zone`."""
    hours, minutes = (int(part) for part in send_time.split(":"))
    local = datetime.combine(day, time(hours, minutes), tzinfo=zone)
    # A time in the spring gap: zoneinfo gives it the offset before the change (fold=0), so the
    # round trip through UTC lands an hour later in local time, which is what we want.
    return local.astimezone(UTC)


def first_run(send_time: str, zone: ZoneInfo, now: datetime) -> NextRun:
    """A company's first run: today's, if its send time is still to come, else tomorrow's."""
    today = now.astimezone(zone).date()
    at = run_at(today, send_time, zone)
    if at <= now:
        today += timedelta(days=1)
        at = run_at(today, send_time, zone)
    return NextRun(today, at)


def same_day(run_date: date, send_time: str, zone: ZoneInfo) -> NextRun:
    """The pending run of `run_date` at a (changed) send time or time zone: it still happens,
    at the next tick if its new time has passed already (a run is never skipped by a change)."""
    return NextRun(run_date, run_at(run_date, send_time, zone))


def after(run_date: date, send_time: str, zone: ZoneInfo, now: datetime) -> NextRun:
    """The run after `run_date`'s: the next local date, or, when the schedule has been down longer
    than CATCH_UP_DAYS, the oldest date still made up."""
    following = run_date + timedelta(days=1)
    oldest = now.astimezone(zone).date() - timedelta(days=CATCH_UP_DAYS)
    following = max(following, oldest)
    return NextRun(following, run_at(following, send_time, zone))
