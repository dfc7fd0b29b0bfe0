"""Claims left `sending` in the send ledger: reported once as `unknown`, never sent again.

A worker that dies after the customer's server took the email, and before the ledger says so, must
not send it again (a missed reminder beats a double one), and must not be forgotten either. The
scheduled sweep (ClaimSweepFunction) writes an `unknown` entry in the sent log and tells the
company's notification address once. A worker that got as far as the sent log (it writes the entry
before the ledger outcome) left the outcome there: the sweep finishes the claim with it instead.

Everything runs on one moto server on 127.0.0.1 (tests.support.processes), so that a worker in a
process of its own (a Lambda container) can be killed mid-send while this process reads what it left.
Mail goes to real SMTP servers on loopback: the customer's email and the company's notice both go
out through the company's account, so both arrive at the one server of that account.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import queue
import re
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from typing import Any

import boto3
import pytest

from local.events import FakeContext
from local.smtp_server import LocalSmtpServer, RecordingHandler
from local.template import ROOT, Template
from mailer.automations.sweep import unknown_entry_id
from mailer.dal import keys
from mailer.dal.sent_log_table import SentLogStore
from mailer.ids import new_id
from mailer.sent_log.models import SentLogEntry
from tests.support.api import Api, load_function
from tests.support.factories import OWNER, TIMEZONE, TOMORROW, smtp_settings, work_order
from tests.support.faults import AwsFaults
from tests.support.outbox import Outbox
from tests.support.processes import moto_server
from tests.support.smtp import ScriptedHandler
from tests.support.steps import activate, run_reminders, save_settings, sync

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "office@acme.example"
CUSTOMER = "wo-1@customer.example"
SCHEDULED = json.loads((ROOT / "events" / "reminder-schedule.json").read_text())  # Scheduler's event
DAY = 86_400


# --- a worker container of its own -------------------------------------------------------------------


def _invoke_worker(event: dict[str, Any], answers: Any) -> None:
    """A spawned process's work: load the email worker as a cold container and invoke it once."""
    try:
        from mailer.delivery import guard
        from tests.support.dns import offline_resolver

        guard.resolver = offline_resolver
        worker = load_function(Template(), "EmailWorkerFunction")
        answers.put(
            ("answer", worker.lambda_handler(event, FakeContext(function_name="EmailWorkerFunction")))
        )
    except BaseException:  # noqa: BLE001 - reported to the test, which fails with it
        answers.put(("error", traceback.format_exc()))


class WorkerContainer:
    """EmailWorkerFunction invoked once with one SQS event, in a fresh process (`spawn`) that reaches
    the moto server and the SMTP servers as a Lambda container would."""

    def __init__(self, event: dict[str, Any]) -> None:
        context = multiprocessing.get_context("spawn")
        self._answers: Any = context.Queue()
        self.process: BaseProcess = context.Process(
            target=_invoke_worker, args=(event, self._answers), name="email-worker", daemon=True
        )
        self.killed = threading.Event()

    def start(self) -> WorkerContainer:
        self.process.start()
        return self

    def kill(self) -> None:
        """End it at once (SIGKILL), as a Lambda container ends when it crashes or times out."""
        self.process.kill()
        self.process.join(10)
        self.killed.set()

    def wait_killed(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.killed.wait(0.05):
            try:
                kind, value = self._answers.get_nowait()
            except queue.Empty:
                if time.monotonic() > deadline:
                    raise TimeoutError("the worker was never killed") from None
                continue
            raise AssertionError(f"the worker finished instead of dying: {kind}: {value}")

    def answer(self, timeout: float = 60.0) -> Any:
        kind, value = self._answers.get(timeout=timeout)
        if kind == "error":
            raise AssertionError(f"the worker process failed:\n{value}")
        return value

    def __enter__(self) -> WorkerContainer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)
        self._answers.close()


class KillAtData(RecordingHandler):
    """Keeps each message; for the first, kills `sender` before answering its DATA. The server then
    holds the customer's email while the worker never learns that it was taken, as when a Lambda
    dies between the send and the ledger update. The worker is blocked reading the reply, so SIGKILL
    ends it there."""

    def __init__(self) -> None:
        super().__init__()
        self.sender: WorkerContainer | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        sender, self.sender = self.sender, None
        if sender is not None:
            sender.kill()
        return reply


class HoldAtData(RecordingHandler):
    """Keeps each message; holds the reply to the first DATA until `release` is set, so its worker
    is in the middle of its send for as long as the test needs."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if not self.arrived.is_set():
            self.arrived.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)
        return reply


# --- fixtures and steps --------------------------------------------------------------------------------


@pytest.fixture
def aws(template: Template, function_env: None, trust_local_ca: Any) -> Iterator[boto3.Session]:
    """This module's AWS: one moto server on loopback that worker processes reach too (the `api` and
    `outbox` fixtures take it from here)."""
    with moto_server(template):
        yield boto3.Session()


@pytest.fixture
def stale_after(template: Template) -> int:
    """Seconds after which the sweep takes a claim as stale: the template's STALE_CLAIM_SECONDS."""
    return int(template.function_environment("ClaimSweepFunction")["STALE_CLAIM_SECONDS"])


def save_company(api: Api, server: LocalSmtpServer, **changes: Any) -> None:
    body = smtp_settings(ACCOUNT, PASSWORD, port=server.port, notify_email=OWNER, timezone=TIMEZONE)
    save_settings(api, {k: v for k, v in (body | changes).items() if v is not None})


def queue_reminder(api: Api, outbox: Outbox) -> dict[str, Any]:
    """WO-1 is due a reminder; the noon run queues it; the one outbox record, received."""
    activate(api, "reminder")
    sync(api, "WO-1", work_order("WO-1", TOMORROW))
    assert run_reminders(api) == 1
    [record] = outbox.receive()
    return record


THROTTLED = "ProvisionedThroughputExceededException"


def throttle_ledger_updates(template: Template, monkeypatch: pytest.MonkeyPatch) -> AwsFaults:
    """Every UpdateItem on the send ledger (the sweep's mark_unknown) throttled until `clear()`."""
    faults = AwsFaults(monkeypatch)
    ledger = template.names.ref("SendLedgerTable")
    faults.fail(
        "dynamodb",
        THROTTLED,
        operations=("UpdateItem",),
        when=lambda _service, _operation, params: params.get("TableName") == ledger,
    )
    return faults


def throttle_batch_writes(faults: AwsFaults, template: Template, table: str) -> None:
    """Every BatchWriteItem on `table` (a resource of the template) throttled, retries included."""
    name = template.names.ref(table)
    faults.fail(
        "dynamodb",
        THROTTLED,
        operations=("BatchWriteItem",),
        when=lambda _service, _operation, params: name in params.get("RequestItems", {}),
    )


def send_unrecorded(api: Api, outbox: Outbox, template: Template, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reminder reaches the customer's server, then nothing of it can be recorded: the sent log,
    the queue (where the entry would wait) and the ledger (where it would ride) all refuse. The claim
    stays `sending` with no outcome anywhere, and the worker reports the record failed."""
    record = queue_reminder(api, outbox)
    faults = AwsFaults(monkeypatch)
    throttle_batch_writes(faults, template, "SentLogTable")
    throttle_batch_writes(faults, template, "SendLedgerTable")
    faults.fail("sqs", "AWS.SimpleQueueService.ServiceUnavailable", operations=("SendMessageBatch",))
    assert outbox.invoke([record]) == [record["MessageId"]]
    faults.clear()
    assert emails(api) == []


def send_with_outcome_unfinished(
    api: Api, outbox: Outbox, template: Template, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """The reminder is tried and its entry written to the sent log, then the ledger outcome fails
    (DynamoDB throttled its BatchWriteItem, as when the worker dies right there): the claim stays
    `sending`, and the record comes back. Returns the record."""
    record = queue_reminder(api, outbox)
    faults = AwsFaults(monkeypatch)
    throttle_batch_writes(faults, template, "SendLedgerTable")
    assert outbox.invoke([record]) == [record["MessageId"]]
    faults.clear()
    return record


def ledger_state(aws: boto3.Session, template: Template, automation: str, occurrence: str) -> str:
    item = (
        aws.resource("dynamodb")
        .Table(template.names.ref("SendLedgerTable"))
        .get_item(
            Key={"pk": keys.tenant_pk("demo"), "sk": keys.ledger_sk(automation, "WO-1", occurrence)},
            ConsistentRead=True,
        )["Item"]
    )
    return str(item["state"])


def sweep(template: Template, seconds_later: int = 0) -> dict[str, int]:
    """ClaimSweepFunction's scheduled run, as EventBridge Scheduler invokes it, on a clock
    `seconds_later` ahead of this machine's."""
    function = load_function(template, "ClaimSweepFunction")
    function.services().claim_sweep.clock = lambda: time.time() + seconds_later
    result: dict[str, int] = function.lambda_handler(
        SCHEDULED, FakeContext(function_name="ClaimSweepFunction")
    )
    return result


def emails(api: Api, **query: str) -> list[dict[str, Any]]:
    status, page, _ = api.call("GET", "/emails", query=query)
    assert status == 200, page
    return page["items"]


def received_by(server: LocalSmtpServer, address: str) -> list[Any]:
    return [m.parsed() for m in server.messages if address in m.rcpt_tos]


# --- a worker killed mid-send --------------------------------------------------------------------------


def test_a_worker_killed_after_the_send_is_reported_once_and_never_sends_again(
    api, template, outbox, smtp_server, stale_after
):
    # Given a reminder the customer's server took from a worker that died before recording it
    killing = KillAtData()
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=killing)
    save_company(api, server)
    record = queue_reminder(api, outbox)
    with WorkerContainer(outbox.event([record])) as worker:
        killing.sender = worker
        worker.start()
        worker.wait_killed()
    assert worker.process.exitcode == -signal.SIGKILL
    assert len(received_by(server, CUSTOMER)) == 1
    assert emails(api) == []  # nothing was recorded

    # When the sweep runs once the claim is past the threshold, and then again
    first = sweep(template, stale_after + 1)
    second = sweep(template, stale_after + 1)

    # Then the sent log shows it as unknown, once, and the company was told once
    assert first == {"found": 1, "finished": 0, "marked": 1, "notified": 1, "deferred": 0}
    assert second == {"found": 0, "finished": 0, "marked": 0, "notified": 0, "deferred": 0}
    [entry] = emails(api)
    assert emails(api, work_order_id="WO-1") == [entry]
    assert api.call("GET", f"/emails/{entry['id']}")[1] == entry
    assert (entry["status"], entry["kind"], entry["automation"], entry["profile"]) == (
        "unknown",
        "automation",
        "reminder",
        "company",
    )
    assert (entry["to"], entry["from"], entry["subject"]) == ([CUSTOMER], ACCOUNT, "Reminder for WO-1")
    assert (entry["error"]["category"], entry["error"]["stage"], entry["error"]["transient"]) == (
        "unknown",
        "send",
        False,
    )
    assert "will not be sent again automatically" in entry["error"]["hint"]
    assert "check with the customer" in entry["error"]["hint"]
    [notice] = received_by(server, OWNER)
    assert notice["Subject"] == "Check with the customer: reminder email for work order WO-1"
    assert notice["Auto-Submitted"] == "auto-generated"
    text = notice.get_body(("plain",)).get_content()
    assert "may have been sent" in text and "will not be sent again automatically" in text
    assert f"Customer WO-1, {CUSTOMER}" in text

    # And the original record, delivered again, sends the customer nothing more
    outbox.sqs.change_message_visibility(
        QueueUrl=outbox.url, ReceiptHandle=record["ReceiptHandle"], VisibilityTimeout=0
    )
    assert outbox.drain() == []
    assert len(received_by(server, CUSTOMER)) == 1
    assert len(server.messages) == 2  # the reminder and the one notice
    assert emails(api) == [entry]


# --- what the sweep leaves alone -----------------------------------------------------------------------


def test_a_send_still_in_progress_is_left_alone_and_its_own_outcome_stands(
    api, template, outbox, smtp_server, stale_after
):
    holding = HoldAtData()
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=holding)
    save_company(api, server)
    record = queue_reminder(api, outbox)

    with WorkerContainer(outbox.event([record])) as worker:
        worker.start()
        assert holding.arrived.wait(60), "the worker never reached DATA"
        during = sweep(template, stale_after - 60)  # the claim is seconds old
        holding.release.set()
        answer = worker.answer()

    assert during == {"found": 0, "finished": 0, "marked": 0, "notified": 0, "deferred": 0}
    assert answer["batchItemFailures"] == []
    assert sweep(template, DAY)["found"] == 0  # sent now: no longer an open claim
    assert [(e["status"], e["to"]) for e in emails(api)] == [("sent", [CUSTOMER])]
    assert [m.rcpt_tos for m in server.messages] == [(CUSTOMER,)]  # no notice


def test_sent_email_is_never_reported_however_late_the_sweep(api, template, outbox, smtp_server):
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD})
    save_company(api, server)
    activate(api, "reminder")
    for number in ("WO-1", "WO-2"):
        sync(api, number, work_order(number, TOMORROW))
    assert run_reminders(api) == 2
    assert outbox.drain() == []

    assert sweep(template, 30 * DAY) == {"found": 0, "finished": 0, "marked": 0, "notified": 0, "deferred": 0}
    assert sorted(e["status"] for e in emails(api)) == ["sent", "sent"]
    assert received_by(server, OWNER) == []


# --- a worker stopped after the sent log, before the ledger -------------------------------------------


def test_a_claim_whose_sent_entry_was_written_is_finished_as_sent_without_a_notice(
    api, aws, template, outbox, smtp_server, stale_after, monkeypatch
):
    # Given a reminder sent and logged whose ledger outcome was never written
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD})
    save_company(api, server)
    record = send_with_outcome_unfinished(api, outbox, template, monkeypatch)
    [logged] = emails(api)
    assert ledger_state(aws, template, "reminder", TOMORROW.isoformat()) == "sending"

    # When the sweep runs once the claim is past the threshold, and then again
    first = sweep(template, stale_after + 1)
    second = sweep(template, stale_after + 1)

    # Then the claim is finished as the sent log says: no unknown entry, no notice
    assert first == {"found": 1, "finished": 1, "marked": 0, "notified": 0, "deferred": 0}
    assert second == {"found": 0, "finished": 0, "marked": 0, "notified": 0, "deferred": 0}
    assert ledger_state(aws, template, "reminder", TOMORROW.isoformat()) == "sent"
    assert emails(api) == [logged]
    assert (logged["status"], logged["to"], logged["automation"]) == ("sent", [CUSTOMER], "reminder")
    assert received_by(server, OWNER) == []

    # And the record, delivered again, sends the customer nothing more
    outbox.sqs.change_message_visibility(
        QueueUrl=outbox.url, ReceiptHandle=record["ReceiptHandle"], VisibilityTimeout=0
    )
    assert outbox.drain() == []
    assert [m.rcpt_tos for m in server.messages] == [(CUSTOMER,)]
    assert emails(api) == [logged]


def test_a_claim_whose_failed_entry_was_written_is_finished_as_failed_without_a_second_notice(
    api, aws, template, outbox, smtp_server, stale_after, monkeypatch
):
    # Given a reminder the customer's server refused for good, logged, its ledger outcome unwritten
    refusing = ScriptedHandler(
        rcpt_reply=lambda address: "550 5.1.1 No such user" if address == CUSTOMER else None
    )
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=refusing)
    save_company(api, server)
    send_with_outcome_unfinished(api, outbox, template, monkeypatch)
    assert [(e["status"], e["to"]) for e in emails(api)] == [("failed", [CUSTOMER])]
    [failure_notice] = received_by(server, OWNER)  # the worker told the company why, once

    # When the sweep runs past the threshold
    result = sweep(template, stale_after + 1)

    # Then the claim is failed, the entry stands alone, and no "may have been sent" notice goes out
    assert result == {"found": 1, "finished": 1, "marked": 0, "notified": 0, "deferred": 0}
    assert ledger_state(aws, template, "reminder", TOMORROW.isoformat()) == "failed"
    assert [e["status"] for e in emails(api)] == ["failed"]
    assert [n["Subject"] for n in received_by(server, OWNER)] == [failure_notice["Subject"]]


def test_an_entry_of_another_automation_does_not_finish_the_claim(
    api, aws, template, outbox, smtp_server, stale_after, monkeypatch
):
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD})
    save_company(api, server)
    send_unrecorded(api, outbox, template, monkeypatch)
    other = SentLogEntry.attempt(
        kind="automation",
        delivery=None,
        failure=None,
        from_=ACCOUNT,
        to=[CUSTOMER],
        subject="Thank you for WO-1",
        profile="company",
        work_order_id="WO-1",
        automation="thank_you",
    )
    SentLogStore(template.names.ref("SentLogTable"), retention_days=90).put("demo", other)

    result = sweep(template, stale_after + 1)

    assert result == {"found": 1, "finished": 0, "marked": 1, "notified": 1, "deferred": 0}
    assert sorted(e["status"] for e in emails(api)) == ["sent", "unknown"]
    assert ledger_state(aws, template, "reminder", TOMORROW.isoformat()) == "unknown"


# --- what the report does without a notice address, a work order or a working account -----------------


def test_without_a_notify_address_the_entry_is_written_and_no_mail_goes_out(
    api, template, outbox, smtp_server, stale_after, monkeypatch
):
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD})
    save_company(api, server, notify_email=None)
    send_unrecorded(api, outbox, template, monkeypatch)

    result = sweep(template, stale_after + 1)

    assert result == {"found": 1, "finished": 0, "marked": 1, "notified": 0, "deferred": 0}
    assert [(e["status"], e["to"]) for e in emails(api)] == [("unknown", [CUSTOMER])]
    assert [m.rcpt_tos for m in server.messages] == [(CUSTOMER,)]


def test_a_work_order_gone_since_still_gets_its_entry(
    api, aws, template, outbox, smtp_server, stale_after, monkeypatch
):
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD})
    save_company(api, server)
    send_unrecorded(api, outbox, template, monkeypatch)
    aws.resource("dynamodb").Table(template.names.ref("WorkOrdersTable")).delete_item(
        Key={"pk": keys.tenant_pk("demo"), "sk": keys.work_order_sk("WO-1")}
    )
    assert api.call("GET", "/work-orders/WO-1")[0] == 404

    result = sweep(template, stale_after + 1)

    assert result == {"found": 1, "finished": 0, "marked": 1, "notified": 1, "deferred": 0}
    [entry] = emails(api, work_order_id="WO-1")
    assert (entry["status"], entry["subject"], entry["to"]) == ("unknown", "Reminder for WO-1", [])
    [notice] = received_by(server, OWNER)
    assert notice["Subject"] == "Check with the customer: reminder email for work order WO-1"


def test_a_notice_that_cannot_be_sent_is_logged_and_the_entry_stands(
    api, template, outbox, smtp_server, stale_after, monkeypatch, caplog
):
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD})
    save_company(api, server)
    send_unrecorded(api, outbox, template, monkeypatch)
    server.stop()  # the company's mail server is down when the sweep runs

    first = sweep(template, stale_after + 1)
    second = sweep(template, stale_after + 1)

    assert first == {"found": 1, "finished": 0, "marked": 1, "notified": 0, "deferred": 0}
    assert second["found"] == 0  # reported once: the notice is not tried again
    assert [e["status"] for e in emails(api)] == ["unknown"]
    [logged] = [r for r in caplog.records if r.getMessage() == "unknown-outcome notice not sent"]
    assert (logged.levelname, vars(logged)["category"], vars(logged)["work_order_id"]) == (
        "ERROR",
        "connection_refused",
        "WO-1",
    )
    assert PASSWORD not in "\n".join(json.dumps(vars(r), default=str) for r in caplog.records)


def test_a_sweep_stopped_after_the_entry_writes_the_same_entry_when_run_again(
    api, template, outbox, smtp_server, stale_after, monkeypatch
):
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD})
    save_company(api, server)
    send_unrecorded(api, outbox, template, monkeypatch)
    faults = throttle_ledger_updates(template, monkeypatch)  # the entry is written, the claim not marked

    stopped = sweep(template, stale_after + 1)
    faults.clear()
    again = sweep(template, stale_after + 1)

    assert stopped == {"found": 1, "finished": 0, "marked": 0, "notified": 0, "deferred": 1}
    assert again == {"found": 1, "finished": 0, "marked": 1, "notified": 1, "deferred": 0}
    assert [e["status"] for e in emails(api)] == ["unknown"]
    assert len(received_by(server, OWNER)) == 1


def test_the_unknown_entry_id_is_the_same_every_run_and_sorts_at_the_time_of_the_claim():
    key = ("demo", "reminder", "WO-1", TOMORROW.isoformat())
    claimed_at = 1_780_000_000
    before, after = new_id(claimed_at * 1000 - 1), new_id(claimed_at * 1000 + 1000)

    entry_id = unknown_entry_id(key, claimed_at)

    assert entry_id == unknown_entry_id(key, claimed_at)
    assert entry_id != unknown_entry_id((*key[:3], "2030-01-02"), claimed_at)
    assert before < entry_id < after
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{26}", entry_id)


def test_the_sweep_counts_what_it_marked_for_the_alarm(
    api, template, outbox, smtp_server, stale_after, monkeypatch, capsys
):
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD})
    save_company(api, server)
    send_unrecorded(api, outbox, template, monkeypatch)
    capsys.readouterr()

    sweep(template, stale_after + 1)

    published = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    values = [blob["AutomatedEmailUnknown"] for blob in published if "AutomatedEmailUnknown" in blob]
    assert values == [[1.0]]
    [directive] = [d for blob in published for d in blob["_aws"]["CloudWatchMetrics"]]
    assert {"Name": "AutomatedEmailUnknown", "Unit": "Count"} in directive["Metrics"]


def test_the_alarm_watches_the_metric_the_sweep_publishes(template):
    alarm = template.resources["UnknownSendAlarm"]["Properties"]
    service = template.function_environment("ClaimSweepFunction")["POWERTOOLS_SERVICE_NAME"]
    namespace = template.function_environment("ClaimSweepFunction")["POWERTOOLS_METRICS_NAMESPACE"]

    assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, "AutomatedEmailUnknown")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": service}]
