"""The README's OAuth walk-through on the local stack, over HTTP: connect the demo company to the
local Microsoft (Graph) and Google (SMTP XOAUTH2), send a test through each, revoke, reconnect."""

from __future__ import annotations

from collections.abc import Iterator
from email import message_from_bytes, policy

import pytest
import requests

from local.stack import LOCAL_ACCOUNT, LocalStack
from tests.support.stack import running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("oauth-stack")) as stack:
        yield stack


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # loopback only, never through a proxy
        yield session


def connect(stack: LocalStack, http: requests.Session, provider: str, transport: str) -> requests.Response:
    started = http.post(
        f"{stack.api_url}/oauth/{provider}/start", json={"profile": "company", "transport": transport}
    )
    assert started.status_code == 200, started.text
    return http.get(started.json()["authorization_url"])  # the browser: sign-in page, then the callback


def send_test(stack: LocalStack, http: requests.Session) -> dict:
    reply = http.post(f"{stack.api_url}/settings/company/test", json={"to": "you@demo.test"})
    assert reply.status_code == 200
    return reply.json()


def delivered(stack: LocalStack, name: str) -> list:
    return [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in stack.mail_dir.glob(f"*-{name}-*.eml")
    ]


def test_the_browser_flow_connects_and_a_test_arrives_through_graph(stack, http):
    page = connect(stack, http, "microsoft", "api")

    assert page.status_code == 200 and "connected" in page.text
    assert page.url.startswith(f"{stack.api_url}/oauth/callback?")
    result = send_test(stack, http)
    assert result["ok"] is True, result
    (message,) = delivered(stack, "graph")
    assert message["From"].addresses[0].addr_spec == LOCAL_ACCOUNT and message["To"] == "you@demo.test"


def test_google_with_xoauth2_then_a_revoked_grant_asks_to_reconnect(stack, http):
    assert connect(stack, http, "google", "smtp").status_code == 200
    assert send_test(stack, http)["ok"] is True
    assert len(delivered(stack, "google-smtp")) == 1

    assert http.post(f"{stack.providers.google.url}/local/revoke-all").status_code == 200
    result = send_test(stack, http)

    assert result["ok"] is False and result["category"] == "oauth_reconnect_required"
    assert "/oauth/google/start" in result["hint"]
    settings = http.get(f"{stack.api_url}/settings/company").json()
    assert settings["oauth"]["status"] == "reconnect_required"
    assert connect(stack, http, "google", "smtp").status_code == 200  # reconnecting mends it
    assert send_test(stack, http)["ok"] is True
