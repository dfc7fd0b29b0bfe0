"""The per-profile `pipelining` switch through the API: a company whose relay advertises PIPELINING
but breaks under it saves `pipelining: false`, and its mail then goes one command at a time; by
default the same server gets MAIL, RCPT and BDAT in one flight."""

from __future__ import annotations

import pytest

from tests.support.factories import smtp_settings
from tests.support.smtp import Servers
from tests.support.smtp_extended import ExtendedSmtpServer
from tests.support.steps import save_settings

ACCOUNT = "billing@acme.example"
PASSWORD = "Corr3ct-Horse-Battery"


@pytest.fixture
def relay(server_tls):
    servers = Servers()
    server = servers.keep(ExtendedSmtpServer(server_context=server_tls, users={ACCOUNT: PASSWORD}).start())
    yield server
    servers.stop_all()


def sent_groups(api, relay) -> list[list[str]]:
    status, body, _ = api.call("POST", "/settings/company/test", {"to": "dana@customer.example"})
    assert status == 200 and body["ok"] is True, body
    [session] = [s for s in relay.wire.sessions if "MAIL" in s.verbs()]
    return [g for g in session.groups() if "MAIL" in g or "RCPT" in g or "BDAT" in g or "DATA" in g]


def test_pipelining_is_used_when_offered(api, trust_local_ca, relay):
    saved = save_settings(api, smtp_settings(ACCOUNT, PASSWORD, port=relay.port))
    assert saved["pipelining"] is True

    assert sent_groups(api, relay) == [["MAIL", "RCPT", "BDAT"]]


def test_pipelining_false_sends_one_command_at_a_time(api, trust_local_ca, relay):
    saved = save_settings(api, smtp_settings(ACCOUNT, PASSWORD, port=relay.port, pipelining=False))
    assert saved["pipelining"] is False

    assert sent_groups(api, relay) == [["MAIL"], ["RCPT"], ["DATA"]]
    assert len(relay.messages) == 1
