"""An interactive send answers before API Gateway gives up (29 s), however slow the mail server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.support.factories import smtp_settings
from tests.support.smtp import ScriptedHandler

ACCOUNT = "billing@acme.example"
PASSWORD = "app-password"
RECIPIENTS = [f"customer{i}@customer.example" for i in range(12)]


class SlowHandler(ScriptedHandler):
    """Takes 2 s over every RCPT, as an overloaded or tarpitting server does."""

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]):
        await asyncio.sleep(2)
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def slow_server(smtp_server, api, trust_local_ca, monkeypatch):
    monkeypatch.setenv("SEND_DEADLINE_SECONDS", "3")
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=SlowHandler())
    status, body, _ = api.call("PUT", "/settings/company", smtp_settings(ACCOUNT, PASSWORD, port=server.port))
    assert status == 200, body
    return server


def test_a_document_to_twelve_recipients_at_a_slow_server_answers_by_the_deadline(api, slow_server):
    body = {"document": {"type": "invoice", "number": "INV-7"}, "to": RECIPIENTS}
    started = time.monotonic()

    status, problem, _ = api.call("POST", "/documents/email", body)

    elapsed = time.monotonic() - started
    assert status == 502 and problem["category"] == "timeout", problem
    assert elapsed < 5, f"answered after {elapsed:.1f} s; 12 recipients at 2 s each take 24 s"
    _, entry, _ = api.call("GET", f"/emails/{problem['email_id']}")
    assert entry["status"] == "failed" and entry["error"]["category"] == "timeout"  # the attempt is recorded
    assert slow_server.messages == []


def test_a_test_send_at_a_slow_server_answers_by_the_deadline(api, slow_server, monkeypatch):
    monkeypatch.setenv("SEND_DEADLINE_SECONDS", "1")
    from local.template import Template
    from tests.support.api import cold_start

    cold_start(Template())
    started = time.monotonic()

    status, result, _ = api.call("POST", "/settings/company/test", {"to": RECIPIENTS[0]})

    assert status == 200 and result["ok"] is False and result["category"] == "timeout", result
    assert time.monotonic() - started < 3
