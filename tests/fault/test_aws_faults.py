"""AWS outages and throttles, injected as the real error codes, on every route and in the worker.

Every HTTP route must answer a clear problem+json (503 for an outage, 409 naming what to do when a
saved password was deleted), never a 500 and never a stack trace; queueing failures must lose no
automated email; a throttle in the worker must leave the record for redelivery, never acknowledge
it unsent.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.api import PROBLEM_JSON, cold_start
from tests.support.factories import OWNER, RUN_DATE, TOMORROW, smtp_settings, work_order
from tests.support.faults import AwsFaults
from tests.support.outbox import Outbox
from tests.support.steps import activate, run_reminders, save_settings, sync

ACCOUNT = "office@acme.example"
PASSWORD = "Aws-Fault-Pa55word"
CUSTOMER = "wo-1@customer.example"
SMTP_SETTINGS = smtp_settings(ACCOUNT, PASSWORD)
DOCUMENT = {
    "document": {"type": "invoice", "number": "INV-1001", "customer_name": "Dana", "amount": "120.00"},
    "to": ["billing@customer.example"],
    "sender": "company",
}


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    body: Any = None
    query: dict[str, str] | None = None

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class World:
    """A tenant with company settings on a real SMTP server, a work order and a sent document."""

    api: Any
    server: Any
    email_id: str

    def calls(self) -> list[Call]:
        """One valid request per route of template.yaml: reads, sends, writes, then deletes."""
        company = SMTP_SETTINGS | {"port": self.server.port, "notify_email": OWNER}
        return [
            Call("GET", "/providers"),
            Call("GET", "/merge-fields"),
            Call("GET", "/settings/company"),
            Call("GET", "/automations"),
            Call("GET", "/automations/confirmation"),
            Call("GET", "/document-templates"),
            Call("GET", "/document-templates/invoice"),
            Call("GET", "/work-orders/WO-1"),
            Call("GET", "/emails"),
            Call("GET", f"/emails/{self.email_id}"),
            Call("POST", "/automations/reminder/preview", {"work_order_id": "WO-1"}),
            Call("POST", "/documents/preview", {"document": DOCUMENT["document"], "sender": "company"}),
            Call(
                "POST",
                "/documents/uploads",
                {"filename": "a.pdf", "content_type": "application/pdf", "size": 9},
            ),
            Call("POST", "/settings/company/test", {"to": "you@acme.example"}),
            Call(
                "POST", "/settings/test", SMTP_SETTINGS | {"port": self.server.port, "to": "you@acme.example"}
            ),
            Call("POST", "/documents/email", DOCUMENT),
            Call("POST", f"/emails/{self.email_id}/resend"),
            Call("PUT", "/work-orders/WO-2", work_order("WO-2", TOMORROW)),
            Call("POST", "/work-orders/WO-1/status", {"status": "en_route"}),
            Call("POST", "/automations/reminder/run", {"date": RUN_DATE.isoformat()}),
            Call("PUT", "/automations/thank_you", {"subject": "Thanks", "body_html": "<p>Thanks</p>"}),
            Call("PUT", "/document-templates/estimate", {"subject": "Estimate", "body_html": "<p>Hi</p>"}),
            Call("PUT", "/settings/company", company),
            Call("DELETE", "/document-templates/estimate"),
            Call("DELETE", "/settings/company"),
        ]


@pytest.fixture
def world(api, template, smtp_server, trust_local_ca) -> World:
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD})
    save_settings(api, SMTP_SETTINGS | {"port": server.port, "notify_email": OWNER})
    activate(api, "confirmation")
    activate(api, "reminder")
    sync(api, "WO-1", work_order("WO-1", TOMORROW))
    status, sent, _ = api.call("POST", "/documents/email", DOCUMENT)
    assert status == 200, sent
    cold_start(template)  # fresh containers: nothing read before a fault (a cached password) may hide it
    return World(api, server, sent["id"])


def answer_all(world: World) -> dict[str, tuple[int, Any, dict[str, str]]]:
    return {
        call.route: world.api.call(call.method, call.path, call.body, query=call.query)
        for call in world.calls()
    }


def problems_in(answers: dict[str, tuple[int, Any, dict[str, str]]]) -> list[str]:
    """Every answer that is a 5xx other than 503, or an error that is not a clean problem document."""
    wrong = []
    for route, (status, body, headers) in answers.items():
        text = body if isinstance(body, str) else json.dumps(body)
        if "Traceback" in text or 'File "' in text:
            wrong.append(f"{route}: {status} shows a stack trace: {text[:300]}")
        if status >= 500 and status != 503:
            wrong.append(f"{route}: {status} {text[:300]}")
        if status >= 400:
            if headers.get("content-type") != PROBLEM_JSON or not isinstance(body, dict):
                wrong.append(
                    f"{route}: {status} is not problem+json: {headers.get('content-type')} {text[:200]}"
                )
                continue
            if body.get("status") != status or not body.get("title") or not body.get("detail"):
                wrong.append(f"{route}: {status} problem lacks status/title/detail: {text[:300]}")
            if "Something went wrong" in str(body.get("detail")):
                wrong.append(f"{route}: {status} answers the generic internal error: {text[:300]}")
    return wrong


def statuses(answers: dict[str, tuple[int, Any, dict[str, str]]]) -> dict[str, int]:
    return {route: answer[0] for route, answer in answers.items()}


# Routes that never touch DynamoDB: provider presets, merge fields, presigning an upload (computed
# locally). Testing unsaved settings does: the test counts against the account's sending budget.
NO_DYNAMODB = {"GET /providers", "GET /merge-fields", "POST /documents/uploads"}
# Routes that read or write the company password in Secrets Manager.
SECRETS = {
    "POST /settings/company/test",
    "POST /documents/email",
    "POST /emails/{id}/resend",
    "PUT /settings/company",
    "DELETE /settings/company",
}
QUEUEING = {"POST /work-orders/WO-1/status"}


def route_key(route: str, world: World) -> str:
    return route.replace(world.email_id, "{id}")


@pytest.mark.parametrize("code", ["ProvisionedThroughputExceededException", "ThrottlingException"])
def test_dynamodb_throttled_every_route_answers_503_problem(world, aws_faults: AwsFaults, code):
    aws_faults.fail("dynamodb", code)

    answers = answer_all(world)

    assert problems_in(answers) == []
    expected = {
        route: (200 if route != "POST /documents/uploads" else 201) if route in NO_DYNAMODB else 503
        for route in answers
    }
    assert statuses(answers) == expected
    assert aws_faults.failed, "the fault was never hit"


@pytest.mark.parametrize("code", ["AWS.SimpleQueueService.ThrottlingException", "RequestThrottled"])
def test_sqs_throttled_every_route_answers_cleanly(world, aws_faults: AwsFaults, code):
    aws_faults.fail("sqs", code)

    answers = answer_all(world)

    assert problems_in(answers) == []
    got = statuses(answers)
    assert {r: s for r, s in got.items() if r in QUEUEING} == {r: 503 for r in QUEUEING}
    assert "queued" in answers["POST /work-orders/WO-1/status"][1]["detail"]
    # The reminder run reports what it queued; what SQS refused is queued by a later run (below).
    assert got["POST /automations/reminder/run"] in (200, 503)
    assert all(s < 400 for r, s in got.items() if r not in QUEUEING | {"POST /automations/reminder/run"}), got


def test_secrets_manager_outage_every_route_answers_cleanly(world, aws_faults: AwsFaults):
    aws_faults.fail("secretsmanager", "InternalServiceError", status=500)

    answers = answer_all(world)

    assert problems_in(answers) == []
    got = {route_key(r, world): s for r, s in statuses(answers).items()}
    assert {r: s for r, s in got.items() if r in SECRETS} == {r: 503 for r in SECRETS}
    assert all(s < 400 for r, s in got.items() if r not in SECRETS), got


def test_secret_deleted_under_saved_settings_is_409_saying_to_save_again(world, api, aws):
    aws.client("secretsmanager").delete_secret(
        SecretId=f"{os.environ['SECRET_PREFIX'].rstrip('/')}/demo/company", ForceDeleteWithoutRecovery=True
    )

    answers = answer_all(world)

    assert problems_in(answers) == []
    got = {route_key(r, world): s for r, s in statuses(answers).items()}
    needs_password = {"POST /settings/company/test", "POST /documents/email", "POST /emails/{id}/resend"}
    assert {r: s for r, s in got.items() if r in needs_password} == {r: 409 for r in needs_password}
    for route in needs_password:
        detail = answers[route.replace("{id}", world.email_id)][1]["detail"]
        assert "Save the settings again" in detail, detail
    # The rest never needed the password; PUT /settings/company (in the list) saved it again.
    assert all(s < 400 for r, s in got.items() if r not in needs_password), got


# --- queueing: an SQS failure loses no automated email ----------------------------------------------


def to_customer(server, address: str = CUSTOMER) -> list[Any]:
    return [m for m in server.messages if address in m.rcpt_tos]


def test_status_change_when_sqs_throttles_is_an_error_and_the_retry_sends_the_email(
    world, api, outbox, aws_faults: AwsFaults
):
    aws_faults.fail("sqs", "RequestThrottled", operations=("SendMessageBatch", "SendMessage"))

    status, body, headers = api.call("POST", "/work-orders/WO-1/status", {"status": "en_route"})

    assert status == 503 and headers["content-type"] == PROBLEM_JSON, body
    assert "try again" in body["detail"]

    aws_faults.clear()  # the business application retries the request it was told failed
    status, body, _ = api.call("POST", "/work-orders/WO-1/status", {"status": "en_route"})
    assert status == 200, body
    outbox.drain()
    assert len(to_customer(world.server)) == 1, (
        f"the on-the-way email was lost: the retry answered {body['email']}"
    )


def test_reminder_run_when_sqs_throttles_reports_it_and_a_later_run_queues_it(
    world, api, outbox, aws_faults: AwsFaults, caplog
):
    for n in (2, 3):
        sync(api, f"WO-{n}", work_order(f"WO-{n}", TOMORROW))
    aws_faults.fail("sqs", "AWS.SimpleQueueService.ThrottlingException")

    status, body, _ = api.call("POST", "/automations/reminder/run", {"date": RUN_DATE.isoformat()})

    assert status == 503 and "3 reminders could not be queued" in body["detail"], body
    aws_faults.clear()
    assert run_reminders(api, RUN_DATE) == 3
    assert outbox.drain() == []
    assert run_reminders(api, RUN_DATE) == 0
    assert sorted(a for m in world.server.messages for a in m.rcpt_tos if a.startswith("wo-")) == [
        "wo-1@customer.example",
        "wo-2@customer.example",
        "wo-3@customer.example",
    ]


def test_reminder_run_with_one_entry_throttled_in_the_batch_queues_it_later(
    world, api, outbox, monkeypatch, caplog
):
    import botocore.client

    for n in (2, 3):
        sync(api, f"WO-{n}", work_order(f"WO-{n}", TOMORROW))
    original = botocore.client.BaseClient._make_api_call
    refused: list[str] = []

    def first_entry_throttled(client, operation, params):
        if operation != "SendMessageBatch":
            return original(client, operation, params)
        first, *rest = params["Entries"]
        refused.append(first["MessageBody"])
        response = original(client, operation, params | {"Entries": rest}) if rest else {"Successful": []}
        failed = {
            "Id": first["Id"],
            "SenderFault": False,
            "Code": "RequestThrottled",
            "Message": "Rate exceeded",
        }
        return response | {"Failed": [failed]}

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", first_entry_throttled)
    status, body, _ = api.call("POST", "/automations/reminder/run", {"date": RUN_DATE.isoformat()})
    assert status == 503 and "1 reminders could not be queued (2 were)" in body["detail"], body
    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", original)

    # The later run queues the refused one again (and, as a second tick does, the two still waiting:
    # the worker's ledger sends each once).
    assert run_reminders(api, RUN_DATE) >= 1
    assert outbox.drain() == []
    assert sorted(a for m in world.server.messages for a in m.rcpt_tos if a.startswith("wo-")) == [
        "wo-1@customer.example",
        "wo-2@customer.example",
        "wo-3@customer.example",
    ]


# --- the worker: a throttle leaves the record for redelivery --------------------------------------


def settings_read(sort_key: str):
    def matches(service: str, operation: str, params: dict[str, Any]) -> bool:
        key = params.get("Key") or {}
        sk = key.get("sk")
        sk = sk.get("S") if isinstance(sk, dict) else sk
        return params.get("TableName") == os.environ["SETTINGS_TABLE"] and str(sk).endswith(sort_key)

    return matches


def queued_reminder(api, outbox: Outbox) -> list[dict[str, Any]]:
    run_reminders(api, RUN_DATE)
    return outbox.receive()


WORKER_FAULTS = [
    pytest.param("dynamodb", "ProvisionedThroughputExceededException", (), None, id="every-dynamodb-call"),
    pytest.param("dynamodb", "ThrottlingException", ("PutItem",), None, id="ledger-claim-put"),
    pytest.param(
        "dynamodb",
        "ProvisionedThroughputExceededException",
        ("GetItem",),
        settings_read("SETTINGS#company"),
        id="company-settings-read-after-the-claim",
    ),
    pytest.param("secretsmanager", "InternalServiceError", (), None, id="password-read-after-the-claim"),
]


@pytest.mark.parametrize(("service", "code", "operations", "when"), WORKER_FAULTS)
def test_worker_throttled_leaves_the_record_for_redelivery_which_then_sends_once(
    world, api, outbox, aws_faults: AwsFaults, service, code, operations, when
):
    messages = queued_reminder(api, outbox)
    assert len(messages) == 1
    aws_faults.fail(service, code, operations=operations, when=when)

    failed = outbox.invoke(messages)

    assert aws_faults.failed, "the fault was never hit"
    assert failed == [messages[0]["MessageId"]], "the record must come back, not be acknowledged unsent"
    assert to_customer(world.server) == []

    aws_faults.clear()
    assert outbox.drain() == []
    assert len(to_customer(world.server)) == 1, "the redelivered reminder was skipped: it is lost"
    assert outbox.drain() == [] and len(to_customer(world.server)) == 1


def test_worker_throttled_after_the_server_accepted_does_not_send_twice(world, api, outbox, aws_faults):
    messages = queued_reminder(api, outbox)
    # The ledger's "sent" mark (UpdateItem) fails after the server took the message.
    aws_faults.fail("dynamodb", "ProvisionedThroughputExceededException", operations=("UpdateItem",))

    outbox.invoke(messages)
    aws_faults.clear()
    outbox.drain()
    outbox.drain()

    assert len(to_customer(world.server)) == 1


def test_worker_with_the_password_deleted_logs_the_failure_and_does_not_drop_it_silently(
    world, api, aws, outbox
):
    aws.client("secretsmanager").delete_secret(
        SecretId=f"{os.environ['SECRET_PREFIX'].rstrip('/')}/demo/company", ForceDeleteWithoutRecovery=True
    )
    messages = queued_reminder(api, outbox)

    for _ in range(5):  # every redelivery SQS would make before the dead-letter queue
        if not messages:
            break
        outbox.invoke(messages)
        messages = outbox.receive()

    _, page, _ = api.call("GET", "/emails", query={"work_order_id": "WO-1"})
    failed = [e for e in page["items"] if e["kind"] == "automation" and e["status"] == "failed"]
    assert len(failed) == 1, "the reminder vanished: neither sent, nor logged as failed"
    assert "Save the settings again" in failed[0]["error"]["hint"]
    assert to_customer(world.server) == []
