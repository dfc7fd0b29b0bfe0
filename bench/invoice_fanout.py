"""3. Invoice reminder fan-out: what a company's daily invoice-reminder run costs in AWS calls and time.

Under moto, each size gets tables of its own (template.yaml's, under another stack name) holding N
open invoices whose customer is emailed, due dates spread over 90 days around the run date, plus N
the run must leave out (paid, void, or a customer reached by text), seeded through a batch writer
with the item InvoiceStore makes. The three default rules (3 days before, on the due date, 7 days
after and every 7 days, 4 times) are activated through InvoiceRuleService.save, so a day's run falls
on six due dates, about 6/90 of the open invoices. InvoiceReminderPlanner.plan runs for every size in
alternating rounds; AWS calls are counted by operation, moto's own time is measured apart. Then the
smallest size plans the same date twice more: at once (the planner only reads the send ledger; no
worker has claimed anything yet), and after the worker's claims of every queued reminder.
`make bench` runs 1,000 / 2,000 / 4,000 open invoices (moto takes ~1 ms to store an invoice and
scans the whole table for every Query); the full size, 10,000 open among 20,000, takes ~2.5 minutes:
Run alone: python -m bench.invoice_fanout --sizes 2500 5000 10000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections import Counter
from datetime import date, timedelta
from typing import Any

from bench.common import (
    RUN_DATE,
    AwsCalls,
    Report,
    fake_aws_environment,
    fmt,
    interleaved,
    invoice_record,
    median_ratio,
    seed_invoices,
    table,
)
from bench.reminder_fanout import QueueSink

SIZES = (1000, 2000, 4000)  # open, emailed invoices; as many again that the run leaves out
SPREAD_DAYS = 90
FIRST_DUE = RUN_DATE - timedelta(days=60)  # due dates from 60 days before the run date to 29 after
LEFT_OUT_IDS = 500_000  # invoice numbers of the left-out invoices start here
TARGET = 0.15  # AWS calls per planned reminder
TENANT = "acme"


def due_date(n: int) -> date:
    return FIRST_DUE + timedelta(days=n % SPREAD_DAYS)


def left_out(n: int) -> Any:
    """Invoices the run must leave out, each kind in turn, on the same spread of due dates."""
    kinds: list[dict[str, Any]] = [
        {"status": "paid", "amount_due": "0.00"},
        {"status": "void"},
        {"customer": {"contact_method": "text"}},
    ]
    return invoice_record(LEFT_OUT_IDS + n, due_date(n), **kinds[(n // SPREAD_DAYS) % len(kinds)])


def expected_reminders(size: int, day: date) -> int:
    """What the rules' own arithmetic says the run must queue: each (active rule, open invoice) that
    falls on `day`."""
    from mailer.billing.rules import DEFAULT_RULE_IDS, default_rule, occurrence_on

    rules = [default_rule(r).model_copy(update={"active": True}) for r in DEFAULT_RULE_IDS]
    return sum(
        occurrence_on(rule, invoice_record(n, due_date(n)), day) is not None
        for n in range(size)
        for rule in rules
    )


def activate_default_rules(services: Any, tenant_id: str, only: tuple[str, ...] | None = None) -> None:
    """The default rules (`only` these, when given), saved active through the rule service as an
    administrator would."""
    from mailer.billing.rules import DEFAULT_RULE_IDS, DEFAULT_RULES, ReminderRuleInput
    from mailer.identity import Caller

    admin = Caller(tenant_id=tenant_id, user_id="admin", email="admin@acme.example", is_admin=True)
    for rule_id in only or DEFAULT_RULE_IDS:
        body = ReminderRuleInput.model_validate(DEFAULT_RULES[rule_id] | {"active": True})
        services.invoice_rules.save(admin, rule_id, body)


class KeptQueue(QueueSink):
    """QueueSink that also keeps every message body it took since `clear()`, with its queue URL:
    what the worker (or the company planner) would receive."""

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.kept: list[tuple[str, str]] = []

    def clear(self) -> None:
        self.kept = []

    def __call__(self, params: dict[str, Any], **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        request = json.loads(params["body"])
        self.kept.extend((request["QueueUrl"], e["MessageBody"]) for e in request["Entries"])
        return super().__call__(params, **kwargs)


def bench_services(stack_name: str, session: Any, function: str = "CompanyPlannerFunction") -> Any:
    """The layer's Services over tables of their own (template.yaml's, under `stack_name`), wired
    from `function`'s environment in the template."""
    from local.template import LocalNames, Template
    from mailer.config import MailerConfig
    from mailer.services import Services

    template = Template(names=LocalNames(stack_name=stack_name))
    template.create_all(session)
    environment = template.function_environment(function) | {
        "MAILER_ALLOWED_NETWORKS": "127.0.0.1/32,::1/128"  # the settings name the loopback sink
    }
    return Services.from_config(MailerConfig.from_env(environment), logging.getLogger("bench"))


def worker_claims(ledger: Any, bodies: list[str]) -> None:
    """Claim and finish (sent) every queued reminder as the outbox worker does, a batch of ten at a
    time (LedgerStore.claim_many, then finish_many)."""
    from mailer.automations.outbox import OutboxMessage, parse_queued
    from mailer.dal.ledger_table import Finish

    keys = [m.ledger_key for m in map(parse_queued, bodies) if isinstance(m, OutboxMessage)]
    for start in range(0, len(keys), 10):
        claims = ledger.claim_many(keys[start : start + 10])
        ledger.finish_many([Finish(key, "sent", claims.claimed_at) for key in claims.claimed])


class InvoicePlanner:
    """One size: its own tables, rules and invoices, planning the run date on demand."""

    def __init__(self, size: int, session: Any, calls: AwsCalls, queue: KeptQueue) -> None:
        self.size = size
        self.calls = calls
        self.queue = queue
        self.services = bench_services(f"invoices{size}", session)
        activate_default_rules(self.services, TENANT)
        table_name = self.services.config.value("invoices_table")
        seed_invoices(table_name, TENANT, (invoice_record(n, due_date(n)) for n in range(size)))
        seed_invoices(table_name, TENANT, (left_out(n) for n in range(size)))
        self.expected = expected_reminders(size, RUN_DATE)
        self.counts: Counter[str] = Counter()
        self.moto_seconds: list[float] = []

    def run_once(self) -> tuple[int, float]:
        """One run of the run date, its AWS calls in `self.calls`: (reminders queued, seconds)."""
        self.calls.reset()
        self.queue.clear()
        with self.calls.recording():
            started = time.perf_counter()
            queued = self.services.invoice_planner.plan(TENANT, RUN_DATE)
            elapsed = time.perf_counter() - started
        if len(self.queue.kept) != queued:
            raise RuntimeError(f"the planner said {queued}, the queue took {len(self.queue.kept)}")
        return queued, elapsed

    def plan(self) -> float:
        queued, elapsed = self.run_once()
        if queued != self.expected:
            raise RuntimeError(f"planned {queued} invoice reminders, the rules say {self.expected}")
        self.counts = Counter(self.calls.counts)
        self.moto_seconds.append(self.calls.moto_seconds)
        return elapsed


def by_operation(counts: Counter[str]) -> str:
    return (
        ", ".join(f"{op} {n}" for op, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"
    )


def size_rows(planners: dict[int, InvoicePlanner], seconds: dict[str, list[float]]) -> list[list[str]]:
    rows = []
    for size, planner in planners.items():
        wall = seconds[str(size)]
        own = [w - m for w, m in zip(wall, planner.moto_seconds, strict=True)]
        reminders = planner.expected
        rows.append(
            [
                f"{size:,} open + {size:,} left out",
                f"{reminders:,}",
                by_operation(planner.counts),
                "yes" if "Scan" in planner.counts else "no",
                fmt(sum(planner.counts.values()) / reminders, 3),
                fmt(statistics.median(wall) * 1e6 / reminders, 0),
                fmt(statistics.median(own) * 1e6 / reminders, 0),
            ]
        )
    return rows


def growth(planners: dict[int, InvoicePlanner], seconds: dict[str, list[float]]) -> dict[str, float]:
    """Median over rounds of (time per reminder at the largest size) / (that at the smallest)."""
    small, large = min(planners), max(planners)
    found = {}
    for label, own in (("wall", False), ("without moto", True)):
        per = {}
        for size in (small, large):
            p = planners[size]
            times = seconds[str(size)]
            if own:
                times = [w - m for w, m in zip(times, p.moto_seconds, strict=True)]
            per[size] = [t / p.expected for t in times]
        found[label] = median_ratio(per[large], per[small])
    return found


def same_date_again(planner: InvoicePlanner) -> list[list[str]]:
    """The run date planned again: at once, then after the worker's claims of what the first run queued."""
    first, _ = planner.run_once()
    first_bodies = [body for _, body in planner.queue.kept]
    first_calls = by_operation(planner.calls.counts)
    again, _ = planner.run_once()
    again_calls = by_operation(planner.calls.counts)
    worker_claims(planner.services.ledger, first_bodies)
    after, _ = planner.run_once()
    return [
        ["first run", f"{first:,}", first_calls],
        [
            "again at once (no worker has claimed yet; the planner only reads the ledger)",
            f"{again:,}",
            again_calls,
        ],
        [
            "again after the worker claimed and sent every reminder",
            f"{after:,}",
            by_operation(planner.calls.counts),
        ],
    ]


def judge(
    report: Report, planners: dict[int, InvoicePlanner], ratio: dict[str, float], again: list[list[str]]
) -> None:
    small, large = min(planners), max(planners)
    per = {s: sum(p.counts.values()) / p.expected for s, p in planners.items()}
    worst = max(per, key=lambda s: per[s])
    scans = any("Scan" in p.counts for p in planners.values())
    report.judge(
        f"at most {TARGET} AWS calls per reminder ({large:,} open)", f"{per[large]:.3f}", per[large] <= TARGET
    )
    report.judge(
        f"at most {TARGET} AWS calls per reminder at every size",
        ", ".join(f"{per[s]:.3f}" for s in sorted(per)) + f" (worst at {worst:,} open)",
        per[worst] <= TARGET,
    )
    report.judge("no Scan", "Scan used" if scans else "no Scan", not scans)
    report.judge(
        f"linear: time/reminder at {large:,} <= 1.25x that at {small:,} (moto's time taken out)",
        f"{ratio['without moto']:.2f}x (wall {ratio['wall']:.2f}x)",
        ratio["without moto"] <= 1.25,
    )
    at_once, after = int(again[1][1].replace(",", "")), int(again[2][1].replace(",", ""))
    report.judge("the same date again queues 0, once the worker has claimed", f"{after:,}", after == 0)
    report.judge("the same date again queues 0, at once (before any claim)", f"{at_once:,}", at_once == 0)


def run(rounds: int = 2, sizes: tuple[int, ...] = SIZES, report: Report | None = None) -> Report:
    import boto3
    from moto import mock_aws

    from mailer.dal import clients as aws_clients

    fake_aws_environment()
    report = report or Report("3. invoice fan-out")
    calls = AwsCalls()
    with mock_aws():
        aws_clients.reset()
        queue = KeptQueue(aws_clients.client("sqs"))  # the planner's own client
        session = boto3.Session(region_name="us-east-1")
        seeding = time.perf_counter()
        planners = {size: InvoicePlanner(size, session, calls, queue) for size in sizes}
        seeded = time.perf_counter() - seeding
        planners[min(sizes)].plan()  # warm-up: clients, imports
        planners[min(sizes)].moto_seconds.clear()
        seconds = interleaved({str(s): p.plan for s, p in planners.items()}, rounds=rounds, warmup=0)
        again = same_date_again(planners[min(sizes)])
    aws_clients.reset()
    add_tables(
        report,
        planners,
        seconds,
        again,
        f"{rounds} interleaved rounds; medians (seeding {2 * sum(sizes):,} invoices took {seeded:.1f} s)",
    )
    return report


def add_tables(
    report: Report,
    planners: dict[int, InvoicePlanner],
    seconds: dict[str, list[float]],
    again: list[list[str]],
    how: str,
) -> None:
    header = ["invoices", "reminders", "AWS calls by operation", "Scan", "calls/reminder", "µs/reminder"]
    header.append("µs/reminder w/o moto")
    report.add(
        table(
            f"3. Invoice reminder fan-out: InvoiceReminderPlanner.plan, the 3 default rules active, {how}",
            header,
            size_rows(planners, seconds),
            left=4,
        )
    )
    ratio = growth(planners, seconds)
    small, large = min(planners), max(planners)
    report.add(
        table(
            f"3. Invoice fan-out growth: time per reminder at {large:,} open / at {small:,} open "
            "(1.00 = linear)",
            ["measure", "ratio"],
            [[k, fmt(v)] for k, v in ratio.items()],
        )
    )
    report.add(
        table(
            f"3. Invoice fan-out: the same date planned again ({small:,} open invoices)",
            ["run", "queued", "AWS calls by operation"],
            again,
            left=3,
        )
    )
    judge(report, planners, ratio, again)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    run(args.rounds, tuple(args.sizes))


if __name__ == "__main__":
    main()
