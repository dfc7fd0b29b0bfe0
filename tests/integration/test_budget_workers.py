"""20 email workers at once under a budget of 30 a minute: what the provider sees stays inside it.

Each worker is a process of its own (multiprocessing `spawn`), as a Lambda container, polling the
outbox queue on one moto server as the SQS event source does and deleting what its handler did not
report as failed. A real SMTP server on loopback counts what arrives. The budget's counters
(DynamoDB items per account and minute) hold across the processes; what is over budget is
deferred to the next minute, and every reminder arrives once.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
import os
import time
import traceback
from collections import Counter
from typing import Any

import boto3

from local.template import Template
from tests.support.factories import TOMORROW, company_settings, work_order
from tests.support.processes import LOAD_TIMEOUT, SlowContext
from tests.support.steps import activate, run_reminders, save_settings, sync

ACCOUNT = "billing@acme.example"
PASSWORD = "Budget-Pa55word-Of-The-Company"
WORKERS = 20
REMINDERS = 45
PER_MINUTE = 30


def poll_and_work(queue_url: str, remaining_ms: int) -> Counter[str]:
    """One container's life: receive up to 3 records at a time, invoke the worker, delete what it did
    not report as failed, until the queue has nothing visible. Outcomes counted by kind."""
    from tests.support.api import load_function

    module = load_function(Template(), "EmailWorkerFunction")
    sqs = boto3.client("sqs")
    outcomes: Counter[str] = Counter()
    while True:
        got = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=3, VisibilityTimeout=120, AttributeNames=["All"]
        ).get("Messages", [])
        if not got:
            return outcomes
        event = {
            "Records": [
                {
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                    "attributes": m["Attributes"],
                    "messageAttributes": {},
                    "md5OfBody": m["MD5OfBody"],
                    "eventSource": "aws:sqs",
                    "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:outbox",
                    "awsRegion": "us-east-1",
                }
                for m in got
            ]
        }
        context = SlowContext(function_name="EmailWorkerFunction", remaining_ms=remaining_ms)
        answer = module.lambda_handler(event, context)
        failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        outcomes["failed"] += len(failed)
        for m in got:
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
                outcomes["done"] += 1


def _container(
    queue_url: str,
    ready: multiprocessing.synchronize.Event,
    go: multiprocessing.synchronize.Event,
    answers: Any,
) -> None:
    try:
        from mailer.delivery import guard
        from tests.support.api import load_function
        from tests.support.dns import offline_resolver

        guard.resolver = offline_resolver
        load_function(Template(), "EmailWorkerFunction")  # the cold start, before the release
        ready.set()
        if not go.wait(LOAD_TIMEOUT):
            raise TimeoutError("never released")
        answers.put(("ok", dict(poll_and_work(queue_url, remaining_ms=120_000))))
    except BaseException:  # noqa: BLE001 - reported to the test
        ready.set()
        answers.put(("error", traceback.format_exc()))


def minute_counts() -> dict[str, int]:
    table = boto3.resource("dynamodb").Table(os.environ["BUDGET_TABLE"])
    items = table.scan()["Items"]  # the test's own look at the counters
    return {item["sk"]: int(item["n"]) for item in items if str(item["sk"]).startswith("M#")}


def test_twenty_workers_keep_to_thirty_a_minute_and_every_reminder_arrives_once(
    shared_api, template, smtp_server
):
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD})
    save_settings(
        shared_api,
        company_settings(ACCOUNT, PASSWORD, port=server.port, limits={"per_minute": PER_MINUTE}),
    )
    activate(shared_api, "reminder")
    for n in range(REMINDERS):
        sync(shared_api, f"WO-{n}", work_order(f"WO-{n}", TOMORROW))
    assert run_reminders(shared_api) == REMINDERS
    queue_url = os.environ["OUTBOX_QUEUE_URL"]

    mp = multiprocessing.get_context("spawn")
    go, answers = mp.Event(), mp.Queue()
    readies = [mp.Event() for _ in range(WORKERS)]
    processes = [mp.Process(target=_container, args=(queue_url, r, go, answers)) for r in readies]
    for process in processes:
        process.start()
    try:
        for ready in readies:
            assert ready.wait(LOAD_TIMEOUT), "a worker never started"
        go.set()
        results = [answers.get(timeout=240) for _ in processes]
    finally:
        for process in processes:
            process.join(10)
            if process.is_alive():
                process.kill()
    assert all(kind == "ok" for kind, _ in results), [r for kind, r in results if kind != "ok"]

    first_round = len(server.messages)
    counts = minute_counts()
    assert all(n <= PER_MINUTE for n in counts.values()), counts  # never over, in any minute
    assert first_round <= PER_MINUTE * len(counts)

    # What was deferred waits on the queue for its minute to turn, then is sent: once.
    deadline = time.monotonic() + 150
    while len(server.messages) < REMINDERS and time.monotonic() < deadline:
        time.sleep(2)
        poll_and_work(queue_url, remaining_ms=120_000)

    delivered = Counter(address for m in server.messages for address in m.rcpt_tos)
    assert delivered == Counter(f"wo-{n}@customer.example" for n in range(REMINDERS))  # each once
    counts = minute_counts()
    assert all(n <= PER_MINUTE for n in counts.values()), counts
    assert sum(counts.values()) == REMINDERS and len(counts) >= 2  # the burst took two minutes
