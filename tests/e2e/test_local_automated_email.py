"""Automated email on the local stack, as a user sees it: real HTTP, the outbox queue on moto, the
worker fed by the local poller, and the messages received by the local SMTP server.

The stack seeds the demo tenant (three active automations, work orders around tomorrow); the reminder
run is given the day the seed used, so the test does not depend on the time it runs at.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from email.message import EmailMessage
from typing import Any

import boto3
import pytest
import requests
from aws_lambda_powertools.utilities.data_classes import SQSEvent

from local.events import sqs_record
from local.outbox_poller import QueuePoller, failed_ids
from local.smtp_server import ReceivedMessage
from local.stack import LocalStack
from tests.support.stack import running_stack

CUSTOMERS = {
    "WO-1001": "dana.whitfield@demo.test",
    "WO-1002": "marcus.bell@demo.test",
    "WO-1003": "helen.ortiz@demo.test",  # today
    "WO-1004": "tom.nguyen@demo.test",  # next week
    "WO-1005": "grace.kim@demo.test",  # contact method text
    "WO-1006": "samuel.park@demo.test",  # en route already
    "WO-1007": "alicia.romero@demo.test",  # multi-day parent, tomorrow
    "WO-1007-2": "ben.romero@demo.test",  # its child, the day after
}
ELIGIBLE = ("WO-1001", "WO-1002", "WO-1007")
REMINDER = {
    "type": "reminder",
    "active": True,
    "days_before": 1,
    "subject": "Your visit on [21]",
    "body_html": "<p>Hi {{ customer.first_name }},</p>"
    "<p>[10] is on [20], [21] at [24], at {{ site.address }}.</p>",
}
DELIVERY_SECONDS = 10


@dataclass
class Console:
    """What the stack printed (its `out`), one line per call."""

    lines: list[str]

    def __call__(self, line: str) -> None:
        self.lines.append(line)

    def outbox(self) -> list[str]:
        return [line for line in list(self.lines) if "] outbox: " in line]


@dataclass
class Sent:
    response: requests.Response
    messages: list[ReceivedMessage]


def long_date(day: date) -> str:
    return f"{day:%B} {day.day}, {day.year}"


def text_of(message: ReceivedMessage) -> str:
    parsed: EmailMessage = message.parsed()
    part = parsed.get_body(preferencelist=("plain",))
    assert part is not None, "no text/plain part"
    return str(part.get_content())


def wait_for_messages(stack: LocalStack, count: int, console: Console) -> list[ReceivedMessage]:
    """All messages once the server holds `count` and the worker has settled them (it records what
    it sent after the server accepted it, and the API does not wait for that); fails after
    DELIVERY_SECONDS with the console."""
    assert stack.smtp is not None
    deadline = time.monotonic() + DELIVERY_SECONDS

    def settled() -> int:
        return len([line for line in console.outbox() if line.endswith(": sent")])

    while len(stack.smtp.messages) < count or settled() < count:
        assert time.monotonic() < deadline, (
            f"{len(stack.smtp.messages)} of {count} messages after {DELIVERY_SECONDS} s; "
            f"outbox lines: {console.outbox()}"
        )
        time.sleep(0.05)
    return list(stack.smtp.messages)


def recipients(messages: list[ReceivedMessage]) -> list[str]:
    return sorted(address for m in messages for address in m.rcpt_tos)


@pytest.fixture(scope="module")
def console() -> Console:
    return Console([])


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, console: Console) -> Iterator[LocalStack]:
    """One stack for the module; moto's state is per process, so no other stack runs meanwhile."""
    with running_stack(tmp_path_factory.mktemp("automated"), out=console) as stack:
        yield stack


@pytest.fixture(scope="module")
def http(stack: LocalStack) -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(scope="module")
def run_date(stack: LocalStack) -> date:
    assert stack.demo_today is not None
    return stack.demo_today


@pytest.fixture(scope="module")
def reminders(stack: LocalStack, http: requests.Session, console: Console, run_date: date) -> Sent:
    """A reminder wording with both merge field syntaxes, then the noon run of the seed's day."""
    assert stack.smtp is not None
    saved = http.put(f"{stack.api_url}/automations/reminder", json=REMINDER)
    assert saved.status_code == 200, saved.text
    before = len(stack.smtp.messages)

    response = http.post(f"{stack.api_url}/automations/reminder/run", json={"date": run_date.isoformat()})

    assert response.status_code == 200, response.text
    messages = wait_for_messages(stack, before + len(ELIGIBLE), console)[before:]
    return Sent(response, messages)


@pytest.fixture(scope="module")
def wo1001_status_emails(
    stack: LocalStack, http: requests.Session, console: Console, reminders: Sent
) -> dict[str, Sent]:
    """WO-1001, reminded, goes en route then completed; each change delivers its email."""
    assert stack.smtp is not None
    sent = {}
    for status in ("en_route", "completed"):
        before = len(stack.smtp.messages)
        response = http.post(f"{stack.api_url}/work-orders/WO-1001/status", json={"status": status})
        assert response.status_code == 200, response.text
        assert response.json()["email"]["queued"] is True, response.text
        sent[status] = Sent(response, wait_for_messages(stack, before + 1, console)[before:])
    return sent


def preview(http: requests.Session, stack: LocalStack, automation: str, work_order_id: str) -> dict[str, Any]:
    response = http.post(
        f"{stack.api_url}/automations/{automation}/preview", json={"work_order_id": work_order_id}
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


class TestReminderRun:
    def test_the_run_queues_exactly_the_eligible_work_orders(self, reminders: Sent) -> None:
        assert reminders.response.json() == {"queued": len(ELIGIBLE)}

    def test_one_reminder_per_eligible_work_order_to_its_customer(self, reminders: Sent) -> None:
        assert recipients(reminders.messages) == sorted(CUSTOMERS[w] for w in ELIGIBLE)
        for message in reminders.messages:
            parsed = message.parsed()
            assert [a.addr_spec for a in parsed["To"].addresses] == list(message.rcpt_tos)
            assert parsed["From"].addresses[0].addr_spec == "billing@demo.test"
            assert parsed["Auto-Submitted"] == "auto-generated"
            assert message.tls is True and message.auth_user == "billing@demo.test"
            assert message.path is not None and message.path.is_file()  # in MAIL_DIR

    def test_merge_fields_are_filled_in_both_syntaxes(self, reminders: Sent, run_date: date) -> None:
        tomorrow = run_date + timedelta(days=1)
        (dana,) = [m for m in reminders.messages if m.rcpt_tos == (CUSTOMERS["WO-1001"],)]

        assert dana.parsed()["Subject"] == f"Your visit on {long_date(tomorrow)}"
        text = text_of(dana)
        assert "Hi Dana," in text
        assert (
            f"WO-1001 is on {tomorrow:%A}, {long_date(tomorrow)} at 8:00 AM - 10:00 AM, "
            "at 1420 W Elm St, Springfield, IL 62704." in " ".join(text.split())
        )
        assert "[" not in text and "{{" not in text

    def test_reminded_work_orders_show_confirmation_sent(
        self, stack: LocalStack, http: requests.Session, reminders: Sent
    ) -> None:
        for work_order_id in CUSTOMERS:
            response = http.get(f"{stack.api_url}/work-orders/{work_order_id}")
            assert response.status_code == 200, response.text
            expected = "confirmation_sent" if work_order_id in ELIGIBLE else "none"
            assert response.json()["confirmation_status"] == expected, work_order_id

    def test_a_second_run_queues_and_sends_nothing(
        self, stack: LocalStack, http: requests.Session, reminders: Sent, run_date: date
    ) -> None:
        assert stack.smtp is not None
        before = len(stack.smtp.messages)

        response = http.post(f"{stack.api_url}/automations/reminder/run", json={"date": run_date.isoformat()})

        assert response.status_code == 200, response.text
        assert response.json() == {"queued": 0}
        time.sleep(2)  # the poller's long poll is one second: anything queued would have arrived
        assert stack.smtp.messages[before:] == []

    def test_the_multi_day_child_gets_no_reminder_of_its_own(
        self, stack: LocalStack, http: requests.Session, reminders: Sent
    ) -> None:
        parent = [m for m in reminders.messages if m.rcpt_tos == (CUSTOMERS["WO-1007"],)]
        assert len(parent) == 1
        assert "WO-1007 is on" in text_of(parent[0])
        assert CUSTOMERS["WO-1007-2"] not in recipients(reminders.messages)
        child = http.get(f"{stack.api_url}/work-orders/WO-1007-2").json()
        assert (child["parent_id"], child["confirmation_status"]) == ("WO-1007", "none")

    def test_the_console_has_a_line_per_outbox_message(self, console: Console, reminders: Sent) -> None:
        for work_order_id in ELIGIBLE:
            assert any(
                line.endswith(f"outbox: reminder for {work_order_id} (tenant demo): sent")
                for line in console.outbox()
            ), console.outbox()


class TestStatusChanges:
    def test_en_route_delivers_the_confirmation(
        self, stack: LocalStack, http: requests.Session, wo1001_status_emails: Sent
    ) -> None:
        sent = wo1001_status_emails["en_route"]
        assert sent.response.json()["email"] == {"queued": True, "reason": None, "automation": "confirmation"}
        assert sent.response.json()["work_order"]["status"] == "en_route"
        (message,) = sent.messages
        assert message.rcpt_tos == (CUSTOMERS["WO-1001"],)
        expected = preview(http, stack, "confirmation", "WO-1001")
        assert message.parsed()["Subject"] == expected["subject"]
        assert "Luis" in expected["subject"] or "Luis" in text_of(message)

    def test_completed_delivers_the_thank_you(
        self, stack: LocalStack, http: requests.Session, wo1001_status_emails: Sent
    ) -> None:
        sent = wo1001_status_emails["completed"]
        assert sent.response.json()["email"] == {"queued": True, "reason": None, "automation": "thank_you"}
        (message,) = sent.messages
        assert message.rcpt_tos == (CUSTOMERS["WO-1001"],)
        assert message.parsed()["Subject"] == preview(http, stack, "thank_you", "WO-1001")["subject"]
        assert "Demo Plumbing & Heating" in message.parsed()["Subject"] + text_of(message)

    def test_a_customer_who_wants_texts_gets_no_email(
        self, stack: LocalStack, http: requests.Session, reminders: Sent
    ) -> None:
        response = http.post(f"{stack.api_url}/work-orders/WO-1005/status", json={"status": "en_route"})

        assert response.status_code == 200, response.text
        email = response.json()["email"]
        assert email["queued"] is False
        assert "text" in email["reason"]
        assert CUSTOMERS["WO-1005"] not in recipients(reminders.messages)

    def test_a_multi_day_child_is_confirmed_at_its_parents_address(
        self, stack: LocalStack, http: requests.Session, console: Console, reminders: Sent
    ) -> None:
        assert stack.smtp is not None
        before = len(stack.smtp.messages)

        response = http.post(f"{stack.api_url}/work-orders/WO-1007-2/status", json={"status": "en_route"})

        assert response.status_code == 200, response.text
        assert response.json()["email"]["queued"] is True, response.text
        (message,) = wait_for_messages(stack, before + 1, console)[before:]
        assert message.rcpt_tos == (CUSTOMERS["WO-1007"],)

    def test_the_sent_log_lists_reminder_confirmation_and_thank_you(
        self, stack: LocalStack, http: requests.Session, wo1001_status_emails: Sent
    ) -> None:
        response = http.get(f"{stack.api_url}/emails", params={"work_order_id": "WO-1001"})

        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert [i["automation"] for i in items] == ["thank_you", "confirmation", "reminder"]  # newest first
        for item in items:
            assert (item["kind"], item["status"], item["work_order_id"]) == ("automation", "sent", "WO-1001")
            assert item["to"] == [CUSTOMERS["WO-1001"]]
            assert item["message_id"]
        sent_ids = {m.parsed()["Message-ID"] for s in wo1001_status_emails.values() for m in s.messages}
        assert sent_ids <= {i["message_id"] for i in items}


class TestOutboxPoller:
    """Lambda's SQS event source, as the poller plays it."""

    def sqs(self, stack: LocalStack) -> Any:
        return boto3.client("sqs", endpoint_url=stack.moto_url, region_name="us-east-1")

    def test_records_are_shaped_like_lambdas(self, stack: LocalStack) -> None:
        sqs = self.sqs(stack)
        url = sqs.create_queue(QueueName="shape-check")["QueueUrl"]
        sqs.send_message(
            QueueUrl=url,
            MessageBody='{"hello": "world"}',
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": "reminder"},
                "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
            },
        )
        (received,) = sqs.receive_message(
            QueueUrl=url, MessageSystemAttributeNames=["All"], MessageAttributeNames=["All"]
        )["Messages"]

        record = sqs_record(received, "arn:aws:sqs:us-east-1:123456789012:shape-check", "us-east-1")

        assert {
            "messageId",
            "receiptHandle",
            "body",
            "attributes",
            "messageAttributes",
            "md5OfBody",
            "eventSource",
            "eventSourceARN",
            "awsRegion",
        } <= record.keys()
        assert (record["eventSource"], record["awsRegion"]) == ("aws:sqs", "us-east-1")
        assert {"ApproximateReceiveCount", "SentTimestamp", "SenderId"} <= record["attributes"].keys()
        assert record["attributes"]["ApproximateReceiveCount"] == "1"
        assert record["messageAttributes"]["kind"] == {
            "stringValue": "reminder",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        }
        assert record["messageAttributes"]["blob"]["binaryValue"] == "AAE="
        (parsed,) = SQSEvent({"Records": [record]}).records  # as the worker's BatchProcessor reads it
        assert parsed.json_body == {"hello": "world"}
        assert parsed.attributes.approximate_receive_count == "1"
        assert parsed.message_attributes["kind"].string_value == "reminder"  # type: ignore[union-attr]
        assert json.loads(json.dumps(record)) == record

    @pytest.mark.parametrize(
        ("result", "expected"),
        [
            (None, set()),
            ({}, set()),
            ({"batchItemFailures": []}, set()),
            ({"batchItemFailures": [{"itemIdentifier": "b"}]}, {"b"}),
            ({"batchItemFailures": [{"itemIdentifier": ""}]}, None),
            ({"batchItemFailures": [{"itemIdentifier": "zz"}]}, None),
            ({"batchItemFailures": [{"id": "a"}]}, None),
            ("not an object", None),
        ],
    )
    def test_batch_responses_are_read_as_lambda_reads_them(
        self, result: Any, expected: set[str] | None
    ) -> None:
        assert failed_ids(result, ["a", "b"]) == expected

    def test_a_handler_crash_leaves_the_batch_for_redelivery(
        self, stack: LocalStack, console: Console
    ) -> None:
        assert stack.functions is not None
        functions, real_invoke = stack.functions, stack.functions.invoke
        crashed = []

        def crash(logical_id: str, event: dict[str, Any]) -> Any:
            crashed.append(event)
            raise RuntimeError("boom")

        body = {"tenant_id": "demo", "automation": "reminder", "work_order_id": "WO-9999", "occurrence": "x"}
        functions.invoke = crash  # type: ignore[method-assign]
        try:
            self.sqs(stack).send_message(
                QueueUrl=stack.template.names.ref("OutboxQueue"), MessageBody=json.dumps(body)
            )
            deadline = time.monotonic() + DELIVERY_SECONDS
            while not crashed:
                assert time.monotonic() < deadline, console.outbox()
                time.sleep(0.05)
        finally:
            functions.invoke = real_invoke  # type: ignore[method-assign]
        line = "outbox: reminder for WO-9999 (tenant demo): skipped: work order gone"
        deadline = time.monotonic() + DELIVERY_SECONDS
        while not any(x.endswith(line) for x in console.outbox()):
            assert time.monotonic() < deadline, console.outbox()
            time.sleep(0.05)
        assert stack.outbox.running
        assert any("RuntimeError: boom" in x and "attempt 1 of 5" in x for x in console.outbox())
        assert any(x.endswith(line) for x in console.outbox())

    def test_a_message_that_always_fails_ends_in_the_dead_letter_queue(
        self, stack: LocalStack, console: Console
    ) -> None:
        sqs, names = self.sqs(stack), stack.template.names
        dead_letters = sqs.get_queue_url(QueueName=names.queue_name("OutboxDeadLetterQueue"))["QueueUrl"]
        poller = stack.outbox
        poller.retry_delay = 0  # no waiting between the five tries
        try:
            sqs.send_message(QueueUrl=names.ref("OutboxQueue"), MessageBody="not an outbox message")
            deadline = time.monotonic() + 3 * DELIVERY_SECONDS
            while True:
                moved = sqs.receive_message(QueueUrl=dead_letters, WaitTimeSeconds=1).get("Messages", [])
                if moved:
                    break
                assert time.monotonic() < deadline, console.outbox()
        finally:
            poller.retry_delay = stack.config.retry_seconds
        assert moved[0]["Body"] == "not an outbox message"
        tries = [x for x in console.outbox() if "an unreadable message: not done" in x]
        assert [f"attempt {n} of 5" in x for n, x in enumerate(tries, 1)] == [True] * 5
        assert "dead-letter queue local-OutboxDeadLetterQueue" in tries[-1]
        assert "ValidationError" in tries[0]
        assert stack.outbox.running

    def test_stop_is_prompt(self, stack: LocalStack) -> None:
        """A second poller on the same queue (idle: nothing is queued now) stops within a long poll."""
        assert stack.functions is not None
        source = next(s for s in stack.template.queue_sources() if s.queue == "OutboxQueue")
        poller = QueuePoller(
            stack.functions, stack.template, source, endpoint_url=stack.moto_url, out=lambda line: None
        ).start()
        time.sleep(0.3)
        started = time.monotonic()

        poller.stop()

        assert time.monotonic() - started < 3
        assert not poller.running
