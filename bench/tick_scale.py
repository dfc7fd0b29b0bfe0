"""3. The schedule tick at scale, and one company's daily run: what the 15-minute tick costs in AWS
calls as the companies due grow, and what planning one company costs per reminder.

The tick: under moto, each size gets a settings table of its own (template.yaml's, under another
stack name) holding the next run of N companies all due at 18:00Z on 1 December 2026 and of 1,000
companies due later (18:30Z that day to 18:00Z the next), each run the item RunScheduleStore.put
writes, and for every company an active invoice rule (the flag through which the tick on the hour
finds companies that have no next run yet). ScheduleTick.tick at 18:00Z (on the hour, so it adopts
first) and at 18:15Z (the same companies, not yet planned, still due) runs for every size in
alternating rounds; its AWS calls are counted by operation, and the PlanCompany messages it sends
are kept (botocore's before-call hook answers SendMessageBatch, as in the reminder fan-out) to check
that it queued exactly the companies due.

One company's daily run: one set of tables, one company per size with its settings and an active
work-order reminder saved through the layer's services (no work order due), the on-due invoice rule
active, and 10, 100 or 1,000 open invoices due on the run date plus as many that are not (paid, due
another day). CompanyRun.run as services.company_run wires it (every planner: work orders, invoices,
statements; then SendSchedule.advance) runs for each company in alternating rounds, its run put back
on the run date before each round; only the invoice reminders are due.
Run alone: python -m bench.tick_scale
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import partial
from typing import Any

from bench.common import (
    AwsCalls,
    Report,
    fake_aws_environment,
    fmt,
    interleaved,
    invoice_record,
    median_ratio,
    seed_invoices,
    setup_tenant,
    table,
)
from bench.invoice_fanout import KeptQueue, activate_default_rules, bench_services, by_operation

COMPANIES = (100, 500, 1000)  # companies due in the slot; LATER more are due after it
LATER = 1000
REMINDERS = (10, 100, 1000)  # invoice reminders of one company's run
SLOT = datetime(2026, 12, 1, 18, 0, tzinfo=UTC)
SLOT_KEY = "2026-12-01T18:00Z"
TICKS = {  # the slot's own tick, and the next one: the companies due are due still (not planned)
    SLOT: "18:00Z (on the hour)",
    SLOT + timedelta(minutes=15): "18:15Z",
}
RUN_DAY = date(2026, 12, 1)
TICK_TARGET = 0.2  # AWS calls per company due
RUN_TARGET = 0.15  # AWS calls per reminder of one company's run (the fan-out's target)


def due_company(n: int) -> str:
    return f"co-{n:04d}"


class TickStack:
    """One size: a settings table with N companies due in the slot and LATER due after it, each with
    an active invoice rule (the flag the hour's tick reads to find companies without a next run)."""

    def __init__(self, companies: int, session: Any, calls: AwsCalls, queue: KeptQueue) -> None:
        self.companies = companies
        self.calls = calls
        self.queue = queue
        self.services = bench_services(f"tick{companies}", session, "ScheduleTickFunction")
        due = [(due_company(n), RUN_DAY, SLOT_KEY) for n in range(companies)]
        later = [SLOT + timedelta(minutes=15 * (2 + n % 95)) for n in range(LATER)]  # 18:30Z on
        runs = due + [
            (f"later-{n:04d}", at.date(), at.strftime("%Y-%m-%dT%H:%MZ")) for n, at in enumerate(later)
        ]
        self.seed(runs)
        self.due = {tenant for tenant, _, _ in due}
        self.counts: dict[str, Counter[str]] = {}
        self.moto_seconds: dict[str, list[float]] = {}
        self.not_due_queued = 0

    def seed(self, runs: list[tuple[str, date, str]]) -> None:
        """Each company's next run as RunScheduleStore.put writes it, and its active-rule flag as the
        rule service saved it for the first company, through one batch writer."""
        from boto3.dynamodb.conditions import Key

        from mailer.dal import clients as aws_clients
        from mailer.dal.keys import tenant_pk

        first = runs[0][0]
        activate_default_rules(self.services, first, only=("on_due",))
        table = aws_clients.dynamodb_table(self.services.config.settings_table)
        (flag,) = table.query(KeyConditionExpression=Key("pk").eq(tenant_pk(first)))["Items"]
        store = self.services.send_schedule.store
        with table.batch_writer() as writer:
            for tenant, run_date, run_at in runs:
                writer.put_item(Item=store._item(tenant, run_date, run_at))  # the item put() writes
                if tenant != first:
                    writer.put_item(Item=flag | {"pk": tenant_pk(tenant), "gsi1sk": tenant})

    def tick(self, at: datetime) -> float:
        from mailer.automations.tick import PlanCompany

        self.calls.reset()
        self.queue.clear()
        with self.calls.recording():
            started = time.perf_counter()
            result = self.services.schedule_tick.tick(at)
            elapsed = time.perf_counter() - started
        queued = [PlanCompany.model_validate_json(body).tenant_id for _, body in self.queue.kept]
        self.not_due_queued = sum(1 for tenant in queued if tenant not in self.due)
        if result["companies"] != len(queued) or len(set(queued)) != len(queued):
            raise RuntimeError(f"the tick returned {result}, queued {len(queued)}")
        if self.due - set(queued):
            raise RuntimeError(f"{len(self.due - set(queued))} companies due were not queued")
        label = at.strftime("%H:%MZ")
        self.counts[label] = Counter(self.calls.counts)
        self.moto_seconds.setdefault(label, []).append(self.calls.moto_seconds)
        return elapsed


class CompanyStack:
    """One set of tables with one company per size, each with REMINDERS[i] invoice reminders due."""

    def __init__(self, sizes: tuple[int, ...], session: Any, calls: AwsCalls) -> None:
        self.calls = calls
        self.services = bench_services("company", session)
        invoices = self.services.config.value("invoices_table")
        for size in sizes:
            tenant = self.tenant(size)
            setup_tenant(self.services, tenant, 2525)  # its time zone and send time, a work-order reminder
            activate_default_rules(self.services, tenant, only=("on_due",))
            seed_invoices(invoices, tenant, (invoice_record(n, RUN_DAY) for n in range(size)))
            seed_invoices(invoices, tenant, (self.not_due(n) for n in range(size)))
        self.counts: dict[int, Counter[str]] = {}
        self.moto_seconds: dict[int, list[float]] = {size: [] for size in sizes}

    @staticmethod
    def tenant(size: int) -> str:
        return f"planned-{size:04d}"

    @staticmethod
    def not_due(n: int) -> Any:
        if n % 2:
            return invoice_record(100_000 + n, RUN_DAY, status="paid", amount_due="0.00")
        return invoice_record(100_000 + n, RUN_DAY + timedelta(days=1 + n % 20))

    def run(self, size: int) -> float:
        """CompanyRun.run for the company of `size`, its run put back on RUN_DAY first (not timed)."""
        from mailer.automations.tick import PlanCompany

        tenant = self.tenant(size)
        runs = self.services.send_schedule.store
        runs.put(tenant, RUN_DAY, SLOT_KEY)
        self.calls.reset()
        with self.calls.recording():
            started = time.perf_counter()
            queued = self.services.company_run.run(PlanCompany(tenant_id=tenant, date=RUN_DAY))
            elapsed = time.perf_counter() - started
        pending = runs.get(tenant)
        only_invoices = queued.get("invoice_reminders") == size == sum(queued.values())  # nothing else is due
        if not only_invoices or pending[0] != RUN_DAY + timedelta(days=1):
            raise RuntimeError(f"{tenant}: queued {queued}, next run {pending}")
        self.counts[size] = Counter(self.calls.counts)
        self.moto_seconds[size].append(self.calls.moto_seconds)
        return elapsed


def tick_rows(stacks: dict[int, TickStack], seconds: dict[str, list[float]]) -> list[list[str]]:
    rows = []
    for companies, stack in stacks.items():
        for at, label in TICKS.items():
            key = at.strftime("%H:%MZ")
            wall = seconds[f"{companies}@{key}"]
            own = [w - m for w, m in zip(wall, stack.moto_seconds[key], strict=True)]
            counts = stack.counts[key]
            rows.append(
                [
                    f"{companies:,} due + {LATER:,} later",
                    label,
                    by_operation(counts),
                    fmt(sum(counts.values()) / companies, 3),
                    fmt(counts["SendMessageBatch"] / companies, 3),
                    str(stack.not_due_queued),
                    fmt(statistics.median(wall) * 1e3, 1),
                    fmt(statistics.median(own) * 1e6 / companies, 0),
                ]
            )
    return rows


def company_rows(stack: CompanyStack, seconds: dict[str, list[float]]) -> list[list[str]]:
    rows = []
    for size, counts in stack.counts.items():
        wall = statistics.median(seconds[str(size)])
        own = statistics.median(
            w - m for w, m in zip(seconds[str(size)], stack.moto_seconds[size], strict=True)
        )
        rows.append(
            [
                f"{size:,}",
                by_operation(counts),
                fmt(sum(counts.values()) / size, 3),
                fmt(wall * 1e3, 1),
                fmt(wall * 1e3 / size, 3),
                fmt(own * 1e3, 1),
                fmt(own * 1e3 / size, 3),
            ]
        )
    return rows


def per_unit_growth(seconds: dict[str, list[float]], moto: dict[int, list[float]]) -> float:
    """Median over rounds of (own time per unit at the largest size) / (that at the smallest)."""
    small, large = min(moto), max(moto)
    per = {
        size: [(w - m) / size for w, m in zip(seconds[str(size)], moto[size], strict=True)]
        for size in (small, large)
    }
    return median_ratio(per[large], per[small])


def as_expected(counts: Counter[str], due: int, flagged: int, on_the_hour: bool) -> bool:
    """Whether the tick cost what it should, with nothing that depends on the reminders the companies
    will send: a Query a shard and a SendMessageBatch per ten companies due; on the hour also the
    Queries of the active-automation flags, one or more each (moto pages them by the whole item's
    size, where DynamoDB counts the keys-only index entry: more pages here), and a BatchGetItem per
    hundred flagged companies (which of them have no next run)."""
    from mailer.dal.keys import RUN_SHARDS

    extra_queries = counts["Query"] - RUN_SHARDS
    expected = {
        "Query": counts["Query"] if on_the_hour and extra_queries >= 1 else RUN_SHARDS,
        "SendMessageBatch": -(-due // 10),
    }
    if on_the_hour:
        expected["BatchGetItem"] = -(-flagged // 100)
    return dict(counts) == expected


def measure_tick(
    report: Report, companies: tuple[int, ...], rounds: int, session: Any, calls: AwsCalls, queue: KeptQueue
) -> None:
    seeding = time.perf_counter()
    stacks = {n: TickStack(n, session, calls, queue) for n in companies}
    seeded = time.perf_counter() - seeding
    contenders: dict[str, Callable[[], float]] = {
        f"{n}@{at:%H:%MZ}": partial(stack.tick, at) for n, stack in stacks.items() for at in TICKS
    }
    for at in TICKS:  # warm-up
        stacks[min(companies)].tick(at)
        stacks[min(companies)].moto_seconds.clear()
    seconds = interleaved(contenders, rounds=rounds, warmup=0)
    report.add(
        table(
            f"3. Schedule tick: ScheduleTick.tick, {rounds} interleaved rounds; medians (writing "
            f"{sum(companies) + LATER * len(companies):,} companies' runs and flags took {seeded:.1f} s)",
            [
                "companies",
                "tick",
                "AWS calls by operation",
                "calls/company due",
                "SendMessageBatch/due",
                "later returned",
                "ms/tick",
                "µs/company w/o moto",
            ],
            tick_rows(stacks, seconds),
            left=3,
        )
    )
    judge_tick(report, stacks, seconds)


def judge_tick(report: Report, stacks: dict[int, TickStack], seconds: dict[str, list[float]]) -> None:
    small, large = min(stacks), max(stacks)
    hour, quarter = (at.strftime("%H:%MZ") for at in TICKS)
    per = {(n, key): sum(s.counts[key].values()) / n for n, s in stacks.items() for key in (hour, quarter)}
    report.figures["tick_calls_per_company"] = per[(large, hour)]
    report.judge(
        f"tick: at most {TICK_TARGET} AWS calls per company due ({large:,} due, {hour} and {quarter})",
        f"{per[(large, hour)]:.3f} and {per[(large, quarter)]:.3f}",
        max(per[(large, hour)], per[(large, quarter)]) <= TICK_TARGET,
    )
    report.judge(
        f"tick: at most {TICK_TARGET} AWS calls per company due at every size",
        ", ".join(f"{per[(n, hour)]:.2f}/{per[(n, quarter)]:.2f} at {n:,}" for n in stacks),
        max(per.values()) <= TICK_TARGET,
    )
    exact = all(
        as_expected(s.counts[key], n, n + LATER, key == hour)
        for n, s in stacks.items()
        for key in (hour, quarter)
    )
    report.judge(
        "tick: calls grow with companies, not reminders (as_expected)",
        "as counted" if exact else "other calls than that (see the table)",
        exact,
    )
    returned = sum(s.not_due_queued for s in stacks.values())
    report.judge(
        "tick: companies not due are not returned", f"{returned} of {LATER:,} returned", returned == 0
    )
    moto = {n: stacks[n].moto_seconds[quarter] for n in (small, large)}
    growth = per_unit_growth({str(n): seconds[f"{n}@{quarter}"] for n in (small, large)}, moto)
    report.judge(
        f"tick: time/company at {large:,} <= 1.25x that at {small:,} ({quarter}, moto's time taken out)",
        f"{growth:.2f}x",
        growth <= 1.25,
    )


def measure_company(
    report: Report, sizes: tuple[int, ...], rounds: int, session: Any, calls: AwsCalls
) -> None:
    seeding = time.perf_counter()
    stack = CompanyStack(sizes, session, calls)
    seeded = time.perf_counter() - seeding
    stack.run(min(sizes))  # warm-up
    stack.moto_seconds[min(sizes)].clear()
    seconds = interleaved({str(size): partial(stack.run, size) for size in sizes}, rounds=rounds, warmup=0)
    report.add(
        table(
            "3. One company's daily run: CompanyRun.run (services.company_run's planners, then the "
            f"schedule's advance), {rounds} interleaved rounds; medians "
            f"(seeding {2 * sum(sizes):,} invoices took {seeded:.1f} s)",
            [
                "invoice reminders",
                "AWS calls by operation",
                "calls/reminder",
                "ms/company",
                "ms/reminder",
                "ms/company w/o moto",
                "ms/reminder w/o moto",
            ],
            company_rows(stack, seconds),
            left=2,
        )
    )
    large = max(sizes)
    per_call = sum(stack.counts[large].values()) / large
    own = statistics.median(
        w - m for w, m in zip(seconds[str(large)], stack.moto_seconds[large], strict=True)
    )
    report.figures["company_run_ms_per_reminder_own"] = own * 1e3 / large
    report.figures["company_run_calls_per_reminder"] = per_call
    report.judge(
        f"company run: at most {RUN_TARGET} AWS calls per reminder ({large:,} reminders)",
        f"{per_call:.3f}",
        per_call <= RUN_TARGET,
    )


def run(
    rounds: int = 2,
    companies: tuple[int, ...] = COMPANIES,
    reminders: tuple[int, ...] = REMINDERS,
    report: Report | None = None,
) -> Report:
    import boto3
    from moto import mock_aws

    from mailer.dal import clients as aws_clients

    fake_aws_environment()
    report = report or Report("3. schedule tick")
    calls = AwsCalls()
    with mock_aws():
        aws_clients.reset()
        queue = KeptQueue(aws_clients.client("sqs"))  # the tick's and the planners' own client
        session = boto3.Session(region_name="us-east-1")
        measure_tick(report, companies, rounds, session, calls, queue)
        measure_company(report, reminders, rounds, session, calls)  # the same queue sink answers
    aws_clients.reset()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--companies", type=int, nargs="+", default=list(COMPANIES))
    parser.add_argument("--reminders", type=int, nargs="+", default=list(REMINDERS))
    args = parser.parse_args()
    run(args.rounds, tuple(args.companies), tuple(args.reminders))


if __name__ == "__main__":
    main()
