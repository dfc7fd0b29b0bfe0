"""Connecting Microsoft 365 and Google accounts with OAuth, through the API, against loopback servers
shaped like the providers' documented endpoints (local/providers): the authorization code flow with
PKCE, then test sends through Graph sendMail, the Gmail API and SMTP XOAUTH2."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from local.events import ADMIN, USER
from local.providers import Providers
from mailer.settings.tokens import forget_access_tokens
from tests.support.factories import pdf_file

REDIRECT = "http://127.0.0.1:3999/oauth/callback"
ACCOUNT = "billing@acme.example"
TO = "dana@customer.example"


@pytest.fixture
def providers(server_tls, trust_local_ca, monkeypatch):
    with Providers(smtp_context=server_tls, account=ACCOUNT, aliases=["sales@acme.example"]) as running:
        for key, value in [*running.env().items(), *running.client_env().items()]:
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("OAUTH_REDIRECT_URL", REDIRECT)
        monkeypatch.setenv("OAUTH_ALLOWED_ORIGINS", "https://app.example")
        forget_access_tokens()
        yield running
    forget_access_tokens()


def start(api, provider="microsoft", *, identity=ADMIN, **body):
    body = {"profile": "company", "transport": "api"} | body
    return api.call("POST", f"/oauth/{provider}/start", body, identity=identity)


def authorize(url: str) -> dict[str, str]:
    """The browser's part: the provider's authorize endpoint redirects back with code and state."""
    reply = requests.get(url, allow_redirects=False, timeout=5)
    assert reply.status_code == 302, reply.text
    location = urlsplit(reply.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT
    return {k: v[0] for k, v in parse_qs(location.query).items()}


def callback(api, query):
    return api.call("GET", "/oauth/callback", query=query, identity=None)


def connect(api, provider="microsoft", transport="api", **body):
    status, started, _ = start(api, provider, transport=transport, **body)
    assert status == 200, started
    status, page, headers = callback(api, authorize(started["authorization_url"]))
    assert status in (200, 302), page
    return status, page, headers


def send_test(api, to=TO):
    status, body, _ = api.call("POST", "/settings/company/test", {"to": to})
    assert status == 200
    return body


# --- the connect flow -------------------------------------------------------------------------


def test_start_builds_an_authorization_code_request_with_pkce_s256(api, providers):
    status, started, _ = start(api, "google", login_hint=ACCOUNT)

    assert status == 200
    query = parse_qs(urlsplit(started["authorization_url"]).query)
    assert query["response_type"] == ["code"] and query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43 and query["state"] == [started["state"]]
    assert query["redirect_uri"] == [REDIRECT] and query["login_hint"] == [ACCOUNT]
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
    assert set(query["scope"][0].split()) == {"openid", "email", "https://www.googleapis.com/auth/gmail.send"}


def test_microsoft_graph_connection_then_a_test_send_arrives_through_graph(api, providers):
    status, _page, headers = connect(api, "microsoft", "api", return_to="https://app.example/settings/email")

    assert status == 302
    assert headers["location"] == "https://app.example/settings/email?oauth=connected&profile=company"
    _, settings, _ = api.call("GET", "/settings/company")
    assert settings["transport"] == "microsoft_graph" and settings["auth"] == "oauth"
    assert settings["from_email"] == ACCOUNT and settings["password_set"] is False
    assert settings["oauth"]["provider"] == "microsoft" and settings["oauth"]["status"] == "connected"
    assert "https://graph.microsoft.com/Mail.Send" in settings["oauth"]["scopes"]

    result = send_test(api)

    assert result["ok"] is True, result
    (delivered,) = providers.graph.messages
    assert delivered.via == "graph.sendMail" and delivered.recipients == (TO,)
    assert delivered.from_addresses == [ACCOUNT]
    assert [m.id for m in providers.graph.sent_items] == [delivered.id]  # filed in Sent Items


def test_gmail_api_connection_sends_with_an_attachment_intact(api, providers):
    connect(api, "google", "api")
    pdf = pdf_file()
    upload = api.call(
        "POST",
        "/documents/uploads",
        {"filename": "INV-1.pdf", "content_type": "application/pdf", "size": len(pdf)},
    )[1]
    requests.put(upload["url"], data=pdf, headers=upload["headers"], timeout=5)
    body = {
        "document": {"type": "invoice", "number": "INV-1"},
        "to": [TO],
        "bcc": ["books@acme.example"],
        "attachments": [{"upload_id": upload["upload_id"]}],
    }

    status, entry, _ = api.call("POST", "/documents/email", body)

    assert status == 200, entry
    (delivered,) = providers.gmail.messages
    assert set(delivered.recipients) == {TO, "books@acme.example"}
    assert "Bcc" not in delivered.message or delivered.via.startswith("gmail")
    (attachment,) = list(delivered.message.iter_attachments())
    assert attachment.get_filename() == "INV-1.pdf" and attachment.get_content() == pdf


@pytest.mark.parametrize("provider", ["microsoft", "google"])
def test_smtp_xoauth2_connection_sends_through_smtp(api, providers, provider):
    connect(api, provider, "smtp")
    _, settings, _ = api.call("GET", "/settings/company")
    assert settings["transport"] == "smtp" and settings["username"] == ACCOUNT and settings["auth"] == "oauth"

    result = send_test(api)

    assert result["ok"] is True, result
    server = providers.microsoft_smtp if provider == "microsoft" else providers.google_smtp
    (delivered,) = server.messages
    assert delivered.auth_user == ACCOUNT and delivered.mail_from == ACCOUNT


def test_the_callback_without_return_to_shows_a_page(api, providers):
    status, page, headers = connect(api, "microsoft")

    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "connected" in page and "<script" not in page


def test_a_reused_state_is_400_and_saves_nothing_more(api, providers):
    status, started, _ = start(api)
    query = authorize(started["authorization_url"])
    assert callback(api, query)[0] == 200

    status, problem, _ = callback(api, query)

    assert status == 400 and problem["errors"][0]["field"] == "state"


def test_an_unknown_state_is_400(api, providers):
    status, _problem, _ = callback(api, {"code": "x", "state": "never-issued"})

    assert status == 400 and api.call("GET", "/settings/company")[0] == 404


def test_declined_consent_returns_to_the_frontend_with_the_reason(api, providers):
    providers.microsoft.decline_next()
    status, started, _ = start(api, return_to="https://app.example/s")
    query = authorize(started["authorization_url"])

    status, _, headers = callback(api, query)

    assert status == 302 and headers["location"] == "https://app.example/s?oauth=error&reason=access_denied"
    assert api.call("GET", "/settings/company")[0] == 404


def test_the_company_account_is_refused_to_a_non_admin(api, providers):
    status, _problem, _ = start(api, identity=USER)

    assert status == 403


def test_a_user_connects_their_own_account(api, providers):
    status, started, _ = start(api, "google", identity=USER, profile="me")
    assert status == 200
    callback(api, authorize(started["authorization_url"]))

    _, mine, _ = api.call("GET", "/settings/me", identity=USER)

    assert mine["transport"] == "gmail_api" and mine["oauth"]["account"] == ACCOUNT


@pytest.mark.parametrize(
    "return_to", ["http://app.example/s", "https://evil.example/s", "javascript:alert(1)"]
)
def test_return_to_must_be_an_allowed_https_origin(api, providers, return_to):
    status, problem, _ = start(api, return_to=return_to)

    assert status == 422 and problem["errors"][0]["field"] == "return_to"


# --- tokens -------------------------------------------------------------------------------------


def test_an_expired_access_token_is_refreshed_and_the_send_goes_through(api, providers):
    connect(api, "microsoft")
    providers.microsoft.expire_access_tokens()
    refreshes = providers.microsoft.refresh_count

    assert send_test(api)["ok"] is True
    assert providers.microsoft.refresh_count == refreshes + 1 and len(providers.graph.messages) == 1


def test_a_rotated_refresh_token_is_stored_at_once_so_the_next_refresh_works(api, providers):
    """Two refreshes in a row where the first rotates the token (the old one is refused after)."""
    connect(api, "microsoft")
    for _ in range(2):
        providers.microsoft.expire_access_tokens()
        forget_access_tokens()  # a cold container: only the stored refresh token is left
        assert send_test(api)["ok"] is True
    assert len(providers.graph.messages) == 2


def test_a_revoked_grant_asks_to_reconnect_and_marks_the_profile(api, providers):
    connect(api, "google")
    providers.google.revoke_all()
    forget_access_tokens()

    result = send_test(api)

    assert result["ok"] is False and result["category"] == "oauth_reconnect_required"
    assert result["stage"] == "auth" and "/oauth/google/start" in result["hint"]
    assert api.call("GET", "/settings/company")[1]["oauth"]["status"] == "reconnect_required"


def test_a_password_put_replaces_the_connection(api, providers):
    connect(api, "microsoft")
    body = {"provider": "office365", "username": ACCOUNT, "password": "app-password", "from_email": ACCOUNT}

    status, saved, _ = api.call("PUT", "/settings/company", body | {"auth": "password"})

    assert status == 200 and saved["auth"] == "password" and saved["oauth"] is None
    assert any(w["field"] == "auth" and "December 2026" in w["message"] for w in saved["warnings"])


def test_a_put_on_an_oauth_profile_keeps_the_connection(api, providers):
    connect(api, "microsoft")

    status, saved, _ = api.call(
        "PUT", "/settings/company", {"from_email": "sales@acme.example", "from_name": "Acme Sales"}
    )

    assert status == 200 and saved["auth"] == "oauth" and saved["from_name"] == "Acme Sales"
    assert send_test(api)["ok"] is True
    assert providers.graph.messages[0].from_addresses == ["sales@acme.example"]


def test_no_token_in_any_response_or_log_line(api, providers, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    _, _, headers = connect(api, "microsoft")
    providers.microsoft.expire_access_tokens()
    answers = [json.dumps(send_test(api)), json.dumps(api.call("GET", "/settings/company")[1])]

    issued = [*providers.registry.access, *providers.registry.refresh]
    assert len(issued) >= 3, "the code exchange and the refresh issued tokens"
    seen = "\n".join([*answers, caplog.text, capsys.readouterr().out, json.dumps(headers)])
    leaked = [t for t in issued if t in seen]
    assert leaked == []


def pkce_matches(verifier: str, challenge: str) -> bool:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == challenge


def upload_pdf(api, pdf: bytes, filename: str = "INV-2.pdf") -> str:
    ticket = api.call(
        "POST",
        "/documents/uploads",
        {"filename": filename, "content_type": "application/pdf", "size": len(pdf)},
    )[1]
    assert requests.put(ticket["url"], data=pdf, headers=ticket["headers"], timeout=30).status_code == 200
    return ticket["upload_id"]


def test_a_message_over_graphs_request_limit_goes_as_a_draft_with_an_upload_session(api, providers):
    """A 5 MB PDF: too large for one sendMail request (4 MB with base64), sent through a draft."""
    connect(api, "microsoft", "api")
    pdf = pdf_file(b"0" * (5 * 1024 * 1024))
    small = pdf_file(b"terms")
    body = {
        "document": {"type": "invoice", "number": "INV-2"},
        "to": [TO],
        "bcc": ["books@acme.example"],
        "attachments": [
            {"upload_id": upload_pdf(api, pdf)},
            {"upload_id": upload_pdf(api, small, "terms.pdf")},
        ],
    }

    status, entry, _ = api.call("POST", "/documents/email", body)

    assert status == 200, entry
    (delivered,) = providers.graph.messages
    assert delivered.via != "graph.sendMail" and set(delivered.recipients) == {TO, "books@acme.example"}
    attachments = {a.get_filename(): a.get_content() for a in delivered.message.iter_attachments()}
    assert attachments == {"INV-2.pdf": pdf, "terms.pdf": small}
    assert [m.id for m in providers.graph.sent_items] == [delivered.id]
