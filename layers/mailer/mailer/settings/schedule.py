"""Keeping each company's next scheduled run (settings/send_time.py) current: when its send time or
time zone changes, and after each run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from mailer.dal.run_schedule import RunScheduleStore
from mailer.settings.send_time import DEFAULT_SEND_TIME, NextRun, after, first_run, same_day


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class SendSchedule:
    store: RunScheduleStore
    default_timezone: str
    now: Callable[[], datetime] = _utc_now

    def zone(self, timezone: str | None) -> ZoneInfo:
        return ZoneInfo(timezone or self.default_timezone)

    def keep(self, tenant_id: str, timezone: str | None, send_time: str | None) -> NextRun:
        """The company's pending run at its (new) send time and time zone: the same date as before
        when it had one (so a change never skips or doubles a day), else its first run."""
        zone, at = self.zone(timezone), send_time or DEFAULT_SEND_TIME
        pending = self.store.get(tenant_id)
        run = same_day(pending[0], at, zone) if pending else first_run(at, zone, self.now())
        self.store.put(tenant_id, run.run_date, run.key)
        return run

    def advance(
        self, tenant_id: str, planned: date, timezone: str | None, send_time: str | None
    ) -> NextRun | None:
        """After the run of `planned`: the next run, or None when another planner moved it already."""
        run = after(planned, send_time or DEFAULT_SEND_TIME, self.zone(timezone), self.now())
        return run if self.store.advance(tenant_id, planned, run.run_date, run.key) else None

    def adopt(
        self, tenant_ids: list[str], settings_of: Callable[[str], tuple[str | None, str | None] | None]
    ) -> int:
        """Give a next run to each of these companies that has none (companies whose settings were
        saved before send times existed); `settings_of` gives a company's (timezone, send_time), or
        None without settings. How many were given one."""
        adopted = 0
        for tenant_id in self.store.without_run(tenant_ids):
            found = settings_of(tenant_id)
            if found is not None:
                self.keep(tenant_id, *found)
                adopted += 1
        return adopted
