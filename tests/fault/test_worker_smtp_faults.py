"""The outbox worker against mail servers that misbehave, end to end under moto.

Each case: the reminder of one work order is queued, the worker (EmailWorkerFunction's handler, fed
SQS events as Lambda feeds it) meets a server that fails in one way, then the same server behaves.
Transient failures must come back for redelivery with the ledger claim released, and the later good
delivery must send exactly once; permanent ones are logged as failed, the company's notify address
is told when the server can carry that notice, and nothing is retried. No run may leave a thread or
a socket behind, or write the password into a log.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import pytest

from local.events import FakeContext
from mailer.dal.ledger_table import LedgerStore
from tests.support.factories import OWNER, RUN_DATE, TOMORROW, company_settings, work_order
from tests.support.leaks import no_leaks
from tests.support.smtp import (
    ScriptedHandler,
    banner,
    close_during_tls_handshake,
    misbehave_then_relay,
    stall,
)
from tests.support.steps import activate, run_reminders, save_settings, sync

ACCOUNT = "office@acme.example"
PASSWORD = "Sm7p-Pa55word-Never-Logged"
CUSTOMER = "wo-1@customer.example"
LEDGER_KEY = ("demo", "reminder", "WO-1", TOMORROW.isoformat())


@dataclass
class Setup:
    """The server the company settings point at (`port`), and the real server behind it."""

    port: int
    upstream: Any  # LocalSmtpServer
    handler: ScriptedHandler

    def heal(self) -> None:
        self.handler.drop_on_mail = None
        self.handler.data_reply = None
        self.handler.rcpt_reply = None

    def to(self, address: str) -> list[Any]:
        return [m for m in self.upstream.messages if address in m.rcpt_tos]


@pytest.fixture(autouse=True)
def worker_env(api, trust_local_ca, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker function's environment, with a short SMTP timeout (read when its services start:
    the `outbox` fixture gives a cold worker, and leaves none warm with its cached password)."""
    monkeypatch.setenv("SMTP_TIMEOUT_SECONDS", "1")


@pytest.fixture
def upstream(smtp_server) -> tuple[Any, ScriptedHandler]:
    handler = ScriptedHandler()
    return smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=handler), handler


def save_company(api, port: int) -> None:
    save_settings(api, company_settings(ACCOUNT, PASSWORD, port=port))


def queue_one_reminder(api) -> None:
    activate(api, "reminder")
    sync(api, "WO-1", work_order("WO-1", TOMORROW))
    assert run_reminders(api, RUN_DATE) == 1


def ledger_state() -> str | None:
    return LedgerStore(os.environ["LEDGER_TABLE"]).state(LEDGER_KEY)


def sent_log(api) -> list[dict[str, Any]]:
    status, page, _ = api.call("GET", "/emails", query={"work_order_id": "WO-1"})
    assert status == 200, page
    return page["items"]


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    """Every record with its extra fields, as a JSON logger would write them."""
    return "\n".join(json.dumps(vars(record), default=str) for record in caplog.records)


def assert_no_password_anywhere(capsys: pytest.CaptureFixture[str], caplog, api) -> None:
    captured = capsys.readouterr()
    assert PASSWORD not in captured.out and PASSWORD not in captured.err
    assert PASSWORD not in log_text(caplog)
    assert PASSWORD not in json.dumps(sent_log(api))


# --- the five servers ------------------------------------------------------------------------------

Arrange = Any  # (scripted_server, upstream server, handler) -> Setup


def connect_421(scripted_server, server, handler) -> Setup:
    greeting = banner("421 4.7.0 mail.flaky.example Too many connections, try again later")
    front = scripted_server(misbehave_then_relay(greeting, server.port))
    return Setup(front.port, server, handler)


def drop_after_mail_from(scripted_server, server, handler) -> Setup:
    handler.drop_on_mail = 1
    return Setup(server.port, server, handler)


def data_451(scripted_server, server, handler) -> Setup:
    handler.data_reply = "451 4.3.0 Temporary local problem, try again later"
    return Setup(server.port, server, handler)


def stall_past_timeout(scripted_server, server, handler) -> Setup:
    front = scripted_server(misbehave_then_relay(stall, server.port))
    return Setup(front.port, server, handler)


def close_in_tls_handshake(scripted_server, server, handler) -> Setup:
    front = scripted_server(misbehave_then_relay(close_during_tls_handshake, server.port))
    return Setup(front.port, server, handler)


TRANSIENT = [
    pytest.param(connect_421, "throttled", id="421-at-connect"),
    pytest.param(drop_after_mail_from, "connection_lost", id="dropped-after-MAIL-FROM"),
    pytest.param(data_451, "throttled", id="451-at-DATA"),
    pytest.param(stall_past_timeout, "timeout", id="stalls-past-the-timeout"),
]


@pytest.mark.parametrize(("arrange", "category"), TRANSIENT)
def test_transient_failure_is_redelivered_then_sent_exactly_once(
    api, outbox, upstream, scripted_server, capsys, caplog, arrange, category
):
    server, handler = upstream
    setup = arrange(scripted_server, server, handler)
    save_company(api, setup.port)
    queue_one_reminder(api)

    with no_leaks():
        failed = outbox.drain()

    assert len(failed) == 1, "a transient failure must come back for redelivery"
    assert ledger_state() is None, "the ledger claim must be released for the redelivery"
    assert setup.to(CUSTOMER) == [] and setup.to(OWNER) == [], "nothing sent, nobody notified yet"
    assert [e for e in sent_log(api) if e["status"] == "failed"] == []
    retried = [r for r in caplog.records if r.getMessage() == "automated email will be retried"]
    assert [r.category for r in retried] == [category]

    setup.heal()
    with no_leaks():
        assert outbox.drain() == []
    with no_leaks():
        assert outbox.drain() == []  # nothing left, nothing sent again

    assert len(setup.to(CUSTOMER)) == 1
    assert ledger_state() == "sent"
    [entry] = sent_log(api)
    assert entry["status"] == "sent" and entry["to"] == [CUSTOMER]
    assert_no_password_anywhere(capsys, caplog, api)


def test_closed_tls_handshake_is_permanent_logged_and_the_company_is_told(
    api, outbox, upstream, scripted_server, capsys, caplog
):
    """The server hangs up in the middle of the TLS handshake: a failure of the settings' TLS, not
    retried. The notice to the company goes out on the next connection, which the server takes."""
    server, handler = upstream
    setup = close_in_tls_handshake(scripted_server, server, handler)
    save_company(api, setup.port)
    queue_one_reminder(api)

    with no_leaks():
        assert outbox.drain() == [], "a permanent failure is acknowledged, not redelivered"

    assert ledger_state() == "failed"
    [entry] = sent_log(api)
    assert entry["status"] == "failed" and entry["kind"] == "automation"
    assert entry["error"]["category"] == "tls_handshake" and entry["error"]["stage"] == "tls"
    assert entry["error"]["transient"] is False
    assert setup.to(CUSTOMER) == []
    [notice] = setup.to(OWNER)
    text = notice.parsed().get_body(("plain",)).get_content()
    assert "WO-1" in text and "How to fix it" in text

    with no_leaks():
        assert outbox.drain() == []
    assert setup.to(CUSTOMER) == [] and len(setup.to(OWNER)) == 1, "no second attempt, no second notice"
    assert_no_password_anywhere(capsys, caplog, api)


def test_transient_failure_on_the_last_delivery_is_logged_and_the_company_is_told(
    api, outbox, upstream, scripted_server, capsys, caplog
):
    """maxReceiveCount is 5: on the fifth receive a transient failure is final, not dead-lettered unsaid."""
    server, handler = upstream
    handler.rcpt_reply = lambda address: (
        "451 4.7.1 Too many messages, slow down" if address == CUSTOMER else None
    )
    save_company(api, server.port)
    queue_one_reminder(api)
    [message] = outbox.receive()
    message["Attributes"]["ApproximateReceiveCount"] = "5"

    with no_leaks():
        assert outbox.invoke([message]) == []

    assert ledger_state() == "failed"
    [entry] = sent_log(api)
    assert entry["status"] == "failed" and entry["error"]["category"] == "throttled"
    assert len(handler.messages) == 1 and handler.messages[0].rcpt_tos == (OWNER,)
    assert_no_password_anywhere(capsys, caplog, api)


def test_redelivering_a_sent_record_sends_nothing_and_leaks_nothing(api, outbox, upstream, capsys, caplog):
    server, handler = upstream
    save_company(api, server.port)
    queue_one_reminder(api)
    [message] = outbox.receive()
    event = outbox.event([message])

    with no_leaks():
        first = outbox.worker.lambda_handler(event, FakeContext())
        second = outbox.worker.lambda_handler(event, FakeContext())

    assert first["batchItemFailures"] == [] and second["batchItemFailures"] == []
    assert len(handler.messages) == 1
    assert_no_password_anywhere(capsys, caplog, api)
