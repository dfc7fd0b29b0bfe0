"""2. Worker throughput: the same reminders as benchmark 1, through EmailWorkerFunction's handler.

Under moto (tables, queue and secrets from template.yaml) with the loopback SMTP sink: company settings
and an active reminder saved through the layer's services, 1,000 eligible work orders seeded, the
reminders planned (AutomatedEmail.plan_reminders), and the queue fed to the worker's lambda_handler in
SQS batches of ten, as tests/integration/test_automated_email.py does. Only the handler's time counts
(receiving and deleting are the Lambda poller's work). The project's direct send path of benchmark 1
runs side by side on the same messages, round by round, for the ratio. AWS calls are counted by
wrapping botocore's BaseClient._make_api_call. Run alone: python -m bench.worker_throughput
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import (
    RUN_DATE,
    TOMORROW,
    AwsCalls,
    Report,
    TlsFiles,
    contexts,
    fake_aws_environment,
    fmt,
    function_environment,
    interleaved,
    load_function,
    median_ratio,
    no_stdout,
    quiet_powertools,
    seed_work_orders,
    setup_tenant,
    table,
    work_order_body,
)
from bench.send_throughput import project_one_connection
from bench.smtp_sink import SinkServer
from local.events import sqs_event

MESSAGES = 1000
BATCH = 10


class WorkerRound:
    """One round: a fresh tenant with `count` due work orders, planned, then drained by the worker."""

    def __init__(self, template: Any, session: Any, sink: SinkServer, calls: AwsCalls) -> None:
        from mailer.config import MailerConfig
        from mailer.services import Services

        self.template = template
        self.sqs = session.client("sqs")
        self.queue_url = template.names.ref("OutboxQueue")
        self.queue_arn = template.names.attribute("OutboxQueue", "Arn")
        self.sink = sink
        self.calls = calls
        # for set-up only; the worker uses its own
        self.services = Services.from_config(MailerConfig.from_env(), logging.getLogger("bench"))
        self.worker = load_function(template, "EmailWorkerFunction")
        quiet_powertools()
        self.rounds = 0
        self.per_message_calls: Counter[str] = Counter()
        self.sent = 0
        self.aws_seconds = 0.0
        self.moto_seconds = 0.0

    def prepare(self, count: int) -> list[dict[str, Any]]:
        tenant = f"acme-{self.rounds}"
        self.rounds += 1
        setup_tenant(self.services, tenant, self.sink.port)
        table_name = os.environ["WORK_ORDERS_TABLE"]
        bodies = (work_order_body(f"WO-{n:05d}", TOMORROW) for n in range(count))
        seed_work_orders(table_name, tenant, bodies)
        queued = self.services.planner.plan(tenant, RUN_DATE)
        if queued != count:
            raise RuntimeError(f"planned {queued} reminders, expected {count}")
        received: list[dict[str, Any]] = []
        while True:  # as the Lambda poller: receive and hide until the function answers
            batch = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=900
            ).get("Messages", [])
            if not batch:
                return received
            received.extend(batch)

    def drain(self, received: list[dict[str, Any]]) -> float:
        """Hand the messages to the handler ten at a time; returns the seconds spent in the handler."""
        from local.events import FakeContext

        before = self.sink.count
        spent = 0.0
        self.calls.reset()
        for start in range(0, len(received), BATCH):
            batch = received[start : start + BATCH]
            event = sqs_event(batch, self.queue_arn)
            with self.calls.recording(), no_stdout():
                started = time.perf_counter()
                response = self.worker.lambda_handler(event, FakeContext())
                spent += time.perf_counter() - started
            if response["batchItemFailures"]:
                raise RuntimeError(f"the worker reported failures: {response['batchItemFailures'][:3]}")
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
        sent = self.sink.count - before
        if sent != len(received):
            raise RuntimeError(f"the sink counted {sent} messages, expected {len(received)}")
        self.sent += sent
        self.per_message_calls.update(self.calls.counts)
        self.aws_seconds += self.calls.call_seconds
        self.moto_seconds += self.calls.moto_seconds
        return spent


def run(
    rounds: int = 4, messages: int = MESSAGES, report: Report | None = None, project_rate: float | None = None
) -> Report:
    import boto3
    from moto import mock_aws

    from local.template import Template
    from mailer.dal import clients as aws_clients
    from mailer.delivery.tls import client_context

    fake_aws_environment()
    report = report or Report("2. worker throughput")
    size = messages // rounds
    with tempfile.TemporaryDirectory() as tmp:
        tls = TlsFiles.create(Path(tmp))
        with SinkServer(tls) as sink, mock_aws():
            template = Template()
            session = boto3.Session(region_name="us-east-1")
            template.create_all(session)
            function_environment(template)
            os.environ["MAILER_EXTRA_CA_BUNDLE"] = tls.ca_bundle
            aws_clients.reset()
            client_context.cache_clear()
            calls = AwsCalls()
            worker = WorkerRound(template, session, sink, calls)
            ctxs = contexts(size)
            worker.drain(worker.prepare(5))  # warm-up: the container's first batch (clients, secret)
            worker.sent, worker.aws_seconds, worker.moto_seconds = 0, 0.0, 0.0
            worker.per_message_calls.clear()
            pending: dict[str, list[dict[str, Any]]] = {}

            def worker_contender() -> float:
                return worker.drain(pending.pop("messages"))

            def project_contender() -> float:
                before = sink.count
                started = time.perf_counter()
                project_one_connection(ctxs, None, sink.port, tls.ca_bundle)
                elapsed = time.perf_counter() - started
                if sink.count - before != size:
                    raise RuntimeError("the direct path did not deliver every message")
                return elapsed

            seconds = interleaved(
                {"worker": worker_contender, "project": project_contender},
                rounds=rounds,
                warmup=0,
                on_round=lambda _r: pending.update(messages=worker.prepare(size)),
            )

    worker_rate = size / statistics.median(seconds["worker"])
    direct_rate = size / statistics.median(seconds["project"])
    ratio = median_ratio(seconds["project"], seconds["worker"])
    handler_total = sum(seconds["worker"])
    own_share = 1 - worker.aws_seconds / handler_total
    without_moto = worker.sent / (handler_total - worker.moto_seconds)
    rows = [
        ["worker handler (SQS batches of 10, moto)", fmt(worker_rate, 0), fmt(ratio)],
        ["project direct path (benchmark 1's, side by side)", fmt(direct_rate, 0), "1.00"],
        [
            "worker handler, moto's backend time taken out",
            fmt(without_moto, 0),
            fmt(without_moto / direct_rate),
        ],
    ]
    if project_rate:
        rows.append(["project direct path as measured in benchmark 1", fmt(project_rate, 0), ""])
    report.add(
        table(
            f"2. Worker throughput: {messages} reminders, {rounds} interleaved rounds of {size}; medians",
            ["path", "msg/s", "x project direct"],
            rows,
        )
    )
    per_message = sorted(worker.per_message_calls.items(), key=lambda kv: -kv[1])
    call_rows = [[op, fmt(n / worker.sent)] for op, n in per_message]
    call_rows.append(["all AWS calls", fmt(sum(worker.per_message_calls.values()) / worker.sent)])
    report.add(
        table(
            "2. AWS calls per sent message, inside the handler "
            f"({fmt(100 * worker.aws_seconds / handler_total, 0)}% of handler time in AWS calls, "
            f"{fmt(100 * worker.moto_seconds / handler_total, 0)}% in moto's backends, "
            f"{fmt(100 * own_share, 0)}% elsewhere)",
            ["operation", "calls per message"],
            call_rows,
        )
    )
    calls_per_message = sum(worker.per_message_calls.values()) / worker.sent
    report.figures["worker_msgs_per_s"] = worker_rate
    report.figures["worker_aws_calls_per_message"] = calls_per_message
    without_moto_ratio = without_moto / direct_rate
    report.judge(
        "worker >= 0.7x the project's direct path",
        f"{ratio:.2f}x ({without_moto_ratio:.2f}x with moto's own time taken out)",
        ratio >= 0.7,
    )
    report.judge("worker <= 1.5 AWS calls per message", f"{calls_per_message:.2f}", calls_per_message <= 1.5)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--messages", type=int, default=MESSAGES)
    args = parser.parse_args()
    run(args.rounds, args.messages)


if __name__ == "__main__":
    main()
