"""Idempotency-Key on POST /documents/email and POST /emails/{id}/resend, through the handlers.

Real SMTP servers on loopback count what arrives. The in-progress and crash cases run the handler
in two processes against one moto server (tests.support.processes), as two Lambda containers.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import time
from typing import Any

import boto3
import pytest
import requests

from local.events import ADMIN, USER, Identity
from local.smtp_server import RecordingHandler
from mailer.config import ConfigError
from mailer.idempotency import HEADER
from tests.support.api import Api, cold_start
from tests.support.factories import pdf_file, smtp_settings
from tests.support.processes import Invocations
from tests.support.steps import save_settings

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "billing@acme.example"
PDF = pdf_file(b"BT /F1 12 Tf (Invoice INV-1001) Tj ET")
INVOICE = {
    "type": "invoice",
    "number": "INV-1001",
    "customer_name": "Dana Whitfield",
    "amount": "1250.00",
    "currency": "USD",
    "due_date": "2026-12-01",
}
KEY = "3f6c1d2e-8b4a-4f7e-9c1d-2a3b4c5d6e7f"
REPLAYED = "idempotent-replayed"
OTHER_TENANT = Identity(tenant_id="other-co", user_id="admin", email="admin@other.example")


class LateReplyHandler(RecordingHandler):
    """Keeps each message at once, then waits `delay` seconds before saying so: the server has the
    message while the client is still waiting for the reply to DATA."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        await asyncio.sleep(self.delay)
        return reply


class HoldFirstHandler(RecordingHandler):
    """Holds the first DATA without keeping the message (its client is about to die); `holding`
    is set when it arrives. Later messages are kept as usual."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if not self.holding.is_set():
            self.holding.set()
            while not self.release.is_set():
                await asyncio.sleep(0.05)
            return "451 4.3.0 Try again later"
        return await super().handle_DATA(server, session, envelope)


# --- helpers ----------------------------------------------------------------------------------------


def upload(api: Api, content: bytes = PDF, identity: Identity = ADMIN) -> str:
    """POST /documents/uploads, then the PUT to the presigned address; the upload id."""
    declared = {"filename": "INV-1001.pdf", "content_type": "application/pdf", "size": len(content)}
    status, ticket, _ = api.call("POST", "/documents/uploads", declared, identity=identity)
    assert status == 201, ticket
    response = requests.put(ticket["url"], data=content, headers=ticket["headers"], timeout=10)
    assert response.status_code == 200
    return str(ticket["upload_id"])


def document(upload_id: str | None = None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"document": INVOICE, "to": ["dana@customer.example"]} | changes
    if upload_id:
        body["attachments"] = [{"upload_id": upload_id}]
    return body


def send(
    api: Api, body: dict[str, Any], key: str | None = KEY, identity: Identity | None = ADMIN
) -> tuple[int, Any, dict[str, str]]:
    headers = {HEADER: key} if key is not None else {}
    return api.call("POST", "/documents/email", body, headers=headers, identity=identity)


def company_settings(port: int, password: str = PASSWORD) -> dict[str, Any]:
    return smtp_settings(ACCOUNT, password, port=port, bcc="archive@acme.example")


def idempotency_items(session: Any) -> list[dict[str, Any]]:
    return session.client("dynamodb").scan(TableName="local-IdempotencyTable")["Items"]


# --- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


@pytest.fixture
def company(api, trust_local_ca, mail_server):
    return save_settings(api, company_settings(mail_server.port))


# --- one process ------------------------------------------------------------------------------------


def test_same_key_twice_sends_once_and_answers_the_first_answer_again(api, company, mail_server):
    body = document(upload(api))

    first = send(api, body)
    again = send(api, body)

    assert first[0] == 200, first[1]
    assert len(mail_server.messages) == 1
    assert again[0] == first[0] and again[1] == first[1]
    assert again[2][REPLAYED] == "true" and again[2]["content-type"] == "application/json"
    assert REPLAYED not in first[2]
    entries = api.call("GET", "/emails", query={"document_type": "invoice", "document_number": "INV-1001"})
    assert [e["id"] for e in entries[1]["items"]] == [first[1]["id"]]  # one attempt logged


def test_without_a_key_every_request_sends(api, company, mail_server):
    body = document(upload(api))

    answers = [send(api, body, key=None) for _ in range(2)]

    assert [a[0] for a in answers] == [200, 200]
    assert answers[0][1]["id"] != answers[1][1]["id"]
    assert all(REPLAYED not in a[2] for a in answers)
    assert len(mail_server.messages) == 2


def test_same_key_with_another_body_is_422_naming_the_key_and_sends_nothing(api, company, mail_server):
    upload_id = upload(api)
    assert send(api, document(upload_id))[0] == 200

    status, problem, _ = send(api, document(upload_id, subject="Your invoice (corrected)"))

    assert status == 422
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert len(mail_server.messages) == 1


def test_the_same_request_written_differently_is_the_same_request(api, company, mail_server):
    """The body is compared as validated: a default spelled out is no other request."""
    assert send(api, document())[0] == 200

    status, _, headers = send(api, document(sender="auto", cc=[]))

    assert status == 200 and headers[REPLAYED] == "true"
    assert len(mail_server.messages) == 1


@pytest.mark.parametrize("other", [USER, OTHER_TENANT], ids=["another user", "another tenant"])
def test_a_key_belongs_to_its_tenant_and_user(api, company, mail_server, other):
    first = send(api, document())
    if other.tenant_id != ADMIN.tenant_id:
        status, _, _ = api.call(
            "PUT", "/settings/company", company_settings(mail_server.port), identity=other
        )
        assert status == 200

    second = send(api, document(), identity=other)

    assert first[0] == second[0] == 200
    assert REPLAYED not in second[2] and second[1]["id"] != first[1]["id"]
    assert len(mail_server.messages) == 2


def test_resend_with_a_key_resends_once(api, company, mail_server):
    sent = send(api, document(upload(api)), key=None)[1]

    answers = [
        api.call("POST", f"/emails/{sent['id']}/resend", headers={HEADER: "resend-1"}) for _ in range(2)
    ]

    assert answers[0][0] == 200 and answers[0][1]["resent_from"] == sent["id"]
    assert answers[1][:2] == answers[0][:2] and answers[1][2][REPLAYED] == "true"
    assert len(mail_server.messages) == 2  # the send and one resend


def test_a_key_used_on_one_route_is_refused_on_another(api, company, mail_server):
    sent = send(api, document())[1]

    status, problem, _ = api.call("POST", f"/emails/{sent['id']}/resend", headers={HEADER: KEY})

    assert status == 422 and problem["errors"][0]["field"] == "Idempotency-Key"
    assert len(mail_server.messages) == 1


@pytest.mark.parametrize(
    "key",
    ["", "k" * 256, "two words", "clé-1", "tab\there", " leading"],
    ids=["empty", "256 characters", "a space", "not ASCII", "a tab", "a leading space"],
)
def test_a_malformed_key_is_422_naming_the_header_and_sends_nothing(api, company, mail_server, key):
    status, problem, _ = send(api, document(), key=key)

    assert status == 422
    assert [e["field"] for e in problem["errors"]] == ["Idempotency-Key"]
    assert mail_server.messages == []


@pytest.mark.parametrize("key", ["!", "~" * 255, "order-42:try#1"], ids=["one", "255", "punctuation"])
def test_keys_of_every_visible_ascii_character_and_length_are_taken(api, company, mail_server, key):
    assert send(api, document(), key=key)[0] == 200
    assert send(api, document(), key=key)[2][REPLAYED] == "true"
    assert len(mail_server.messages) == 1


def test_a_refused_send_leaves_the_key_free_so_a_fixed_password_sends(api, trust_local_ca, mail_server):
    save_settings(api, company_settings(mail_server.port, password="Wr0ng-Horse-Battery"))
    body = document(upload(api))

    refused = send(api, body)
    double_click = send(api, body)
    save_settings(api, company_settings(mail_server.port))
    fixed = send(api, body)
    again = send(api, body)

    assert refused[0] == 502 and refused[1]["category"] == "auth_failed"
    assert double_click[0] == 502 and REPLAYED not in double_click[2]  # ran again, sent nothing again
    assert fixed[0] == 200 and REPLAYED not in fixed[2]
    assert again[:2] == fixed[:2] and again[2][REPLAYED] == "true"
    assert len(mail_server.messages) == 1


def test_no_settings_yet_leaves_the_key_free(api, trust_local_ca, mail_server):
    assert send(api, document())[0] == 409

    save_settings(api, company_settings(mail_server.port))

    assert send(api, document())[0] == 200
    assert len(mail_server.messages) == 1


def test_a_send_the_server_may_have_taken_is_answered_again_not_sent_again(
    api, template, trust_local_ca, smtp_server, monkeypatch
):
    """The server keeps the message but replies to DATA too late: the client times out at stage
    data. A retry must not deliver it twice, so that 502 is the answer kept for the key."""
    late = smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=LateReplyHandler(delay=3))
    monkeypatch.setenv("SMTP_TIMEOUT_SECONDS", "1")
    cold_start(template)
    save_settings(api, company_settings(late.port))

    first = send(api, document())
    again = send(api, document())

    assert first[0] == 502 and (first[1]["stage"], first[1]["category"]) == ("data", "timeout")
    assert again[0] == 502 and again[1] == first[1] and again[2][REPLAYED] == "true"
    assert again[2]["content-type"] == "application/problem+json"
    assert len(late.messages) == 1


def test_the_key_record_holds_a_hash_and_the_answer_for_24_hours(api, aws, company, mail_server):
    before = time.time()
    sent = send(api, document())[1]

    [item] = idempotency_items(aws)

    assert item["status"]["S"] == "COMPLETED"
    assert KEY not in item["id"]["S"] and ADMIN.tenant_id not in item["id"]["S"]
    assert 24 * 3600 - 5 <= int(item["expiration"]["N"]) - before <= 24 * 3600 + 5
    assert sent["id"] in item["data"]["S"]


def test_the_openapi_document_describes_the_header_and_the_409(api, template):
    from tests.support.api import load_function

    schema = load_function(template, "DocumentEmailFunction").app.get_openapi_schema()
    for path in ("/documents/email", "/emails/{email_id}/resend"):
        operation = schema.paths[path].post
        [header] = [p for p in operation.parameters if p.in_.value == "header"]
        assert header.name.lower() == "idempotency-key" and header.required is False
        constraints = header.schema_.model_dump(by_alias=True, exclude_none=True)
        assert (constraints["minLength"], constraints["maxLength"]) == (1, 255)
        assert 409 in operation.responses or "409" in operation.responses


def test_the_function_refuses_to_start_without_its_idempotency_table(template, function_env, monkeypatch):
    monkeypatch.delenv("IDEMPOTENCY_TABLE")
    path, _ = template.handler_path("DocumentEmailFunction")
    spec = importlib.util.spec_from_file_location("fn_document_email_without_table", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)

    with pytest.raises(ConfigError, match="IDEMPOTENCY_TABLE"):
        spec.loader.exec_module(module)


# --- two processes, one moto server -------------------------------------------------------------------


def test_a_second_request_while_the_first_runs_is_409_and_nothing_is_sent_twice(
    shared_api, template, smtp_server
):
    slow = smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=LateReplyHandler(delay=2))
    save_settings(shared_api, company_settings(slow.port))
    body = document(upload(shared_api))

    with Invocations(template) as runs:
        for _ in range(2):
            runs.add("POST", "/documents/email", body, headers={HEADER: KEY})
        runs.start()
        answers = runs.answers()

    assert len(slow.messages) == 1
    [first] = [a for a in answers if a[0] == 200 and REPLAYED not in a[2]]
    [other] = [a for a in answers if a is not first]
    if other[0] == 200:  # it came after the first had finished: a replay
        assert other[1] == first[1] and other[2][REPLAYED] == "true"
    else:
        assert other[0] == 409 and other[2]["content-type"] == "application/problem+json"
        assert "still running" in other[1]["detail"]
    later = send(shared_api, body)
    assert later[1] == first[1] and later[2][REPLAYED] == "true"
    assert len(slow.messages) == 1


def test_a_crashed_request_frees_its_key_when_its_invocation_would_have_timed_out(
    shared_api, template, smtp_server
):
    holding = HoldFirstHandler()
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=holding)
    save_settings(shared_api, company_settings(server.port))
    body = document()

    with Invocations(template) as runs:
        crashing = runs.add("POST", "/documents/email", body, headers={HEADER: KEY}, remaining_ms=3000)
        runs.start()
        assert holding.holding.wait(30), "the first request never reached DATA"
        runs.kill(crashing)  # mid-send, as Lambda ends an invocation that times out
    holding.release.set()

    [item] = idempotency_items(boto3.Session())
    in_progress_until = int(item["in_progress_expiration"]["N"]) / 1000
    assert item["status"]["S"] == "INPROGRESS"
    assert in_progress_until - time.time() < 4  # the invocation's timeout, not the key's 24 hours

    while_held = send(shared_api, body)
    time.sleep(max(0.0, in_progress_until - time.time()) + 0.2)
    after = send(shared_api, body)

    assert while_held[0] == 409
    assert after[0] == 200 and REPLAYED not in after[2]
    assert len(server.messages) == 1
