"""3. Reminder fan-out: what planning 1,000 and 10,000 due reminders costs in AWS calls and time.

Under moto, each size gets tables of its own (template.yaml's, under another stack name) holding N
work orders due tomorrow plus N that are not due (other dates, text or no contact, no valid address,
en route, already confirmed, children of a multi-day job), seeded through a batch writer with the
item WorkOrderStore.put makes. AutomatedEmail.plan_reminders runs for both sizes in alternating
rounds; AWS calls are counted by operation (botocore's BaseClient._make_api_call), moto's own time
is measured apart (it scans a whole table for every Query page, which DynamoDB does not).
Run alone: python -m bench.reminder_fanout
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from collections import Counter
from datetime import timedelta
from typing import Any

from bench.common import (
    RUN_DATE,
    TOMORROW,
    AwsCalls,
    Report,
    fake_aws_environment,
    fmt,
    interleaved,
    median_ratio,
    seed_work_orders,
    setup_tenant,
    table,
    work_order_body,
)

SIZES = (1000, 10000)
TENANT = "acme"


def not_due(n: int) -> dict[str, Any]:
    """Work orders the run must leave out, each kind in turn."""
    number = f"ND-{n:06d}"
    kinds = [
        lambda: work_order_body(number, RUN_DATE + timedelta(days=2 + n % 6)),  # indexed, another date
        lambda: work_order_body(number, TOMORROW, customer={"contact_method": "text"}),
        lambda: work_order_body(number, TOMORROW, customer={"contact_method": "none"}),
        lambda: work_order_body(number, TOMORROW, customer={"email": "not an address"}),
        lambda: work_order_body(number, TOMORROW, status="en_route"),
        lambda: work_order_body(number, TOMORROW, confirmation_status="confirmed"),
        lambda: work_order_body(number, TOMORROW, parent_id="WO-000001"),
        lambda: work_order_body(number, RUN_DATE),  # indexed under today: too late
    ]
    return kinds[n % len(kinds)]()


class QueueSink:
    """Answers SendMessageBatch for one SQS client in botocore's before-call hook: the call is still
    made, validated, serialized and counted; its entries are counted and discarded. moto's SQS
    recounts the whole queue for every message sent (Queue.attributes), which is quadratic: 10,000
    reminders would take hours there, measuring moto and not the planner."""

    def __init__(self, client: Any) -> None:
        self.entries = 0
        client.meta.events.register("before-call.sqs.SendMessageBatch", self)

    def __call__(self, params: dict[str, Any], **_: Any) -> tuple[Any, dict[str, Any]]:
        entries = json.loads(params["body"])["Entries"]  # SQS speaks JSON
        self.entries += len(entries)
        successful = [{"Id": e["Id"], "MessageId": f"m-{self.entries}-{e['Id']}"} for e in entries]
        http = type("Http", (), {"status_code": 200, "headers": {}})()
        return http, {"Successful": successful, "Failed": [], "ResponseMetadata": {"HTTPStatusCode": 200}}


class Planner:
    """One size: its own tables and services, planning on demand."""

    def __init__(self, size: int, session: Any, calls: AwsCalls, queue: QueueSink) -> None:
        from local.template import LocalNames, Template
        from mailer.config import MailerConfig
        from mailer.services import Services

        self.size = size
        self.calls = calls
        self.queue = queue
        template = Template(names=LocalNames(stack_name=f"fanout{size}"))
        template.create_all(session)
        # The settings name the loopback sink (never sent to here), which the address guard admits when told.
        environment = template.function_environment("CompanyPlannerFunction") | {
            "MAILER_ALLOWED_NETWORKS": "127.0.0.1/32,::1/128"
        }
        self.services = Services.from_config(MailerConfig.from_env(environment), logging.getLogger("bench"))
        setup_tenant(self.services, TENANT, 2525)
        table_name = environment["WORK_ORDERS_TABLE"]
        seed_work_orders(table_name, TENANT, (work_order_body(f"WO-{n:06d}", TOMORROW) for n in range(size)))
        seed_work_orders(table_name, TENANT, (not_due(n) for n in range(size)))
        self.counts: Counter[str] = Counter()
        self.moto_seconds: list[float] = []
        self.call_seconds: list[float] = []

    def plan(self) -> float:
        self.calls.reset()
        sent_before = self.queue.entries
        with self.calls.recording():
            started = time.perf_counter()
            queued = self.services.planner.plan(TENANT, RUN_DATE)
            elapsed = time.perf_counter() - started
        if queued != self.size or self.queue.entries - sent_before != self.size:
            raise RuntimeError(f"planned {queued} reminders, expected {self.size}")
        self.counts = Counter(self.calls.counts)
        self.moto_seconds.append(self.calls.moto_seconds)
        self.call_seconds.append(self.calls.call_seconds)
        return elapsed


def run(rounds: int = 2, sizes: tuple[int, ...] = SIZES, report: Report | None = None) -> Report:
    import boto3
    from moto import mock_aws

    from mailer.dal import clients as aws_clients

    fake_aws_environment()
    report = report or Report("3. reminder fan-out")
    calls = AwsCalls()
    with mock_aws():
        aws_clients.reset()
        queue = QueueSink(aws_clients.client("sqs"))  # the planner's own client
        session = boto3.Session(region_name="us-east-1")
        seeding = time.perf_counter()
        planners = {size: Planner(size, session, calls, queue) for size in sizes}
        seeded = time.perf_counter() - seeding
        warm = planners[min(sizes)]  # warm-up: clients, the secret (the large size is too slow to repeat)
        warm.plan()
        warm.moto_seconds.clear()
        warm.call_seconds.clear()
        seconds = interleaved({str(s): p.plan for s, p in planners.items()}, rounds=rounds, warmup=0)
    aws_clients.reset()

    rows = []
    for size, planner in planners.items():
        wall = seconds[str(size)]
        own = [w - m for w, m in zip(wall, planner.moto_seconds, strict=True)]
        total = sum(planner.counts.values())
        by_operation = ", ".join(
            f"{op} {n}" for op, n in sorted(planner.counts.items(), key=lambda kv: -kv[1])
        )
        rows.append(
            [
                f"{size:,} due + {size:,} not due",
                by_operation,
                "yes" if "Scan" in planner.counts else "no",
                fmt(total / size, 3),
                fmt(statistics.median(wall) * 1e6 / size, 0),
                fmt(statistics.median(own) * 1e6 / size, 0),
            ]
        )
    report.add(
        table(
            f"3. Reminder fan-out: plan_reminders, {rounds} interleaved rounds; medians "
            f"(seeding {2 * sum(sizes):,} work orders took {seeded:.1f} s)",
            [
                "work orders",
                "AWS calls by operation",
                "Scan",
                "calls/reminder",
                "µs/reminder",
                "µs/reminder w/o moto",
            ],
            rows,
            left=3,
        )
    )
    small, large = min(sizes), max(sizes)
    growth = {}
    for label, pick in (
        ("wall", lambda p, w: w),
        ("without moto", lambda p, w: [a - b for a, b in zip(w, p.moto_seconds, strict=True)]),
    ):
        per = {s: [t / s for t in pick(planners[s], seconds[str(s)])] for s in (small, large)}
        growth[label] = median_ratio(per[large], per[small])
    report.add(
        table(
            f"3. Growth: time per reminder at {large:,} / time per reminder at {small:,} (1.00 = linear)",
            ["measure", "ratio"],
            [[k, fmt(v)] for k, v in growth.items()],
        )
    )
    worst = max(sum(p.counts.values()) / s for s, p in planners.items())
    scans = any("Scan" in p.counts for p in planners.values())
    report.judge("at most 0.15 AWS calls per reminder", f"{worst:.3f}", worst <= 0.15)
    report.judge("no Scan", "Scan used" if scans else "no Scan", not scans)
    report.judge(
        f"linear: time/reminder at {large:,} <= 1.25x that at {small:,} (moto's time taken out)",
        f"{growth['without moto']:.2f}x (wall {growth['wall']:.2f}x)",
        growth["without moto"] <= 1.25,
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    run(args.rounds, tuple(args.sizes))


if __name__ == "__main__":
    main()
