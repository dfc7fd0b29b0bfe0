"""The schedule: every 15 minutes a tick finds the companies whose daily run has come and queues one
"plan this company" message each; a planner on that queue plans each company on its own.

The tick reads only the companies that are due (settings/send_time.py: an index sorted by each
company's next run instant, a Query a shard), so its AWS calls grow with the companies due, not with
the reminders they will send: a few Queries and one SendMessageBatch per ten companies. Planning one
company (its work-order reminders, invoice reminders and statements) can take thousands of calls;
on the queue, companies are planned concurrently, each retried on its own.

A plan of a date the company has moved on from (a redelivered message, or a tick that queued it
again after the planner was done) plans nothing. Two planners of the same date at the same moment
(the schedule's retry while the first still runs) both queue the day's emails; the worker's claim
in the send ledger then sends each once, and the company's run moves on once (a conditional write).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

from mailer.automations.compose import system_caller
from mailer.dal.outbox_queue import OutboxQueue
from mailer.dal.run_schedule import RunScheduleStore
from mailer.errors import MailerError, NotFound, ServiceUnavailable
from mailer.settings.schedule import SendSchedule
from mailer.settings.service import SettingsService


class PlanCompany(BaseModel):
    """A plan queue message: run the company's daily run of `date` (its local date)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str
    date: date


@dataclass
class ScheduleTick:
    runs: RunScheduleStore
    plan_queue: OutboxQueue
    logger: Any
    adopt: Callable[[], int] | None = None  # once an hour: next runs for companies that have none

    def tick(self, now: datetime) -> dict[str, int]:
        """Queue a plan of every company whose run is at or before `now` (the scheduled time). The
        tick on the hour first gives a next run to the companies with an active automation that have
        none (saved before send times existed), so that they are planned from the same tick on."""
        if self.adopt is not None and now.minute < 15:
            try:
                adopted = self.adopt()
            except MailerError:
                self.logger.exception("companies without a next run not adopted; the next hour tries again")
            else:
                if adopted:
                    self.logger.info("companies given their next run", extra={"count": adopted})
        until = now.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
        due = self.runs.due(until)
        messages = [PlanCompany(tenant_id=run.tenant_id, date=run.run_date) for run in due]
        refused = self.plan_queue.send(messages)
        if refused:
            # Their runs stay due: the next tick queues them again.
            self.logger.error("company plans not queued", extra={"count": len(refused)})
        self.logger.info("schedule tick", extra={"until": until, "companies": len(due)})
        return {"companies": len(due), "queued": len(messages) - len(refused)}


Plan = Callable[[str, date], int]  # (tenant, run date) -> emails queued


@dataclass
class CompanyRun:
    """One company's daily run: each planner for its date, then the company's run moves on."""

    settings: SettingsService
    schedule: SendSchedule
    planners: Sequence[tuple[str, Plan]]  # ("reminders", planner.plan), ...
    logger: Any

    def run(self, message: PlanCompany) -> dict[str, int]:
        """Every planner is tried; if any failed, the run does not move on and the message comes
        back (ServiceUnavailable): the planners that succeeded queue nothing twice next time."""
        tenant, day = message.tenant_id, message.date
        pending = self.schedule.store.get(tenant)
        if pending is not None and pending[0] > day:
            self.logger.info("already planned", extra={"tenant_id": tenant, "date": day.isoformat()})
            return {}
        queued: dict[str, int] = {}
        failed: list[str] = []
        for name, plan in self.planners:
            try:
                queued[name] = plan(tenant, day)
            except MailerError:
                self.logger.exception("a planner failed", extra={"tenant_id": tenant, "planner": name})
                failed.append(name)
        if failed:
            raise ServiceUnavailable(f"planning of {', '.join(failed)} failed for {tenant}; retried")
        zone, send_time = self._send_time(tenant)
        moved = self.schedule.advance(tenant, day, zone, send_time)
        extra = {"tenant_id": tenant, "date": day.isoformat(), "queued": queued, "next": moved and moved.key}
        self.logger.info("company planned", extra=extra)
        return queued

    def _send_time(self, tenant_id: str) -> tuple[str | None, str | None]:
        try:
            view = self.settings.get(system_caller(tenant_id), "company")
        except NotFound:
            return None, None
        return view.timezone, view.send_time
