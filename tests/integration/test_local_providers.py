"""The local provider servers (local.providers) against real clients: requests and smtplib on 127.0.0.1.

These check that the servers behave as the providers document: the authorization code flow with
PKCE, refresh token rotation and revocation, Graph and Gmail sending and their error bodies, and
SMTP AUTH XOAUTH2 behind STARTTLS. The app's own OAuth code is tested elsewhere against them.
"""

from __future__ import annotations

import base64
import json
import secrets
import smtplib
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest
import requests

from local.providers import Providers
from local.providers.gmail_server import GmailServer
from local.providers.graph_server import GraphServer
from local.providers.oauth_server import (
    GOOGLE_CLIENT_ID,
    GOOGLE_CLIENT_SECRET,
    MICROSOFT_CLIENT_ID,
    MICROSOFT_CLIENT_SECRET,
    OAuthClient,
    OAuthServer,
    s256,
)
from local.providers.tokens import TokenRegistry
from local.providers.xoauth2_smtp import XOAuth2SmtpServer, xoauth2_string

ACCOUNT = "billing@demo.test"
ALIAS = "invoices@demo.test"
CUSTOMER = "alice@customer.example"
REDIRECT = "http://127.0.0.1:3000/oauth/callback"  # never contacted: redirects are read, not followed
MS_GRAPH_SCOPE = (
    "offline_access openid email https://graph.microsoft.com/Mail.Send https://graph.microsoft.com/User.Read"
)
MS_ALL_SCOPE = (
    f"{MS_GRAPH_SCOPE} https://graph.microsoft.com/Mail.ReadWrite https://outlook.office.com/SMTP.Send"
)
GOOGLE_SCOPE = "openid email https://www.googleapis.com/auth/gmail.send"
MB = 1024 * 1024


# --- helpers ---------------------------------------------------------------------------------------


class Clock:
    """Wall time the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, s256(verifier)


@dataclass
class Flow:
    """A client of one authorization server, doing what an app's OAuth code does."""

    server: OAuthServer
    http: requests.Session
    client_id: str
    client_secret: str

    def authorize_reply(self, scope: str, *, challenge: str | None = None, **extra: str) -> requests.Response:
        params = {
            "client_id": self.client_id,
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": scope,
            "state": "state-1",
            **extra,
        }
        if challenge is not None:
            params.update(code_challenge=challenge, code_challenge_method="S256")
        return self.http.get(self.server.authorize_url, params=params, allow_redirects=False)

    def authorize(self, scope: str, *, challenge: str | None = None, **extra: str) -> dict[str, str]:
        reply = self.authorize_reply(scope, challenge=challenge, **extra)
        assert reply.status_code == 302, reply.text
        location = reply.headers["Location"]
        assert location.startswith(REDIRECT + "?")
        return dict(parse_qsl(urlsplit(location).query))

    def token(self, *, basic: bool = False, **fields: str) -> requests.Response:
        if basic:
            return self.http.post(
                self.server.token_url, data=fields, auth=(self.client_id, self.client_secret)
            )
        data = {"client_id": self.client_id, "client_secret": self.client_secret, **fields}
        return self.http.post(self.server.token_url, data=data)

    def exchange(self, code: str, verifier: str, **fields: str) -> requests.Response:
        return self.token(
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT,
            code_verifier=verifier,
            **fields,
        )

    def connect(self, scope: str, **extra: str) -> dict[str, Any]:
        verifier, challenge = pkce()
        query = self.authorize(scope, challenge=challenge, **extra)
        reply = self.exchange(query["code"], verifier)
        assert reply.status_code == 200, reply.text
        return reply.json()

    def refresh(self, refresh_token: str, **fields: str) -> requests.Response:
        return self.token(grant_type="refresh_token", refresh_token=refresh_token, **fields)


def mime(sender: str = ACCOUNT, to: str = CUSTOMER, subject: str = "Invoice 1042", **options: Any) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    if to:
        message["To"] = to
    message["Subject"] = subject
    message.set_content(options.get("text", "Please find invoice 1042 attached."))
    if "attachment" in options:
        message.add_attachment(
            options["attachment"], maintype="application", subtype="pdf", filename="1042.pdf"
        )
    return message.as_bytes()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def graph_send(http: requests.Session, graph: GraphServer, token: str, raw: bytes, **options: Any) -> Any:
    path = options.get("path", "/me/sendMail")
    headers = {**bearer(token), "Content-Type": "text/plain"}
    return http.post(f"{graph.base_url}{path}", data=base64.b64encode(raw), headers=headers)


def gmail_send(http: requests.Session, gmail: GmailServer, token: str, raw: bytes) -> requests.Response:
    body = {"raw": base64.urlsafe_b64encode(raw).decode()}
    return http.post(f"{gmail.base_url}/gmail/v1/users/me/messages/send", json=body, headers=bearer(token))


def graph_error(reply: requests.Response) -> dict[str, Any]:
    body = reply.json()
    assert set(body) == {"error"}
    assert {"code", "message", "innerError"} <= set(body["error"])
    assert {"date", "request-id", "client-request-id"} <= set(body["error"]["innerError"])
    return body["error"]


def google_error(reply: requests.Response) -> dict[str, Any]:
    error = reply.json()["error"]
    assert error["code"] == reply.status_code
    assert {"message", "errors", "status"} <= set(error)
    assert {"message", "domain", "reason"} <= set(error["errors"][0])
    return error


# --- fixtures --------------------------------------------------------------------------------------


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def registry(clock: Clock) -> TokenRegistry:
    return TokenRegistry(clock=clock)


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.trust_env = False  # no proxy, no netrc: straight to 127.0.0.1
        yield session


@pytest.fixture
def started() -> Iterator[Callable[[Any], Any]]:
    servers: list[Any] = []

    def start(server: Any) -> Any:
        servers.append(server.start())
        return server

    yield start
    for server in reversed(servers):
        server.stop()


@pytest.fixture
def microsoft(registry: TokenRegistry, started: Callable[[Any], Any]) -> OAuthServer:
    client = OAuthClient(MICROSOFT_CLIENT_ID, MICROSOFT_CLIENT_SECRET, (REDIRECT,))
    return started(OAuthServer(registry, flavor="microsoft", clients=[client], account=ACCOUNT))


@pytest.fixture
def google(registry: TokenRegistry, started: Callable[[Any], Any]) -> OAuthServer:
    client = OAuthClient(GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET, (REDIRECT,))
    return started(OAuthServer(registry, flavor="google", clients=[client], account=ACCOUNT))


@pytest.fixture
def ms(microsoft: OAuthServer, http: requests.Session) -> Flow:
    return Flow(microsoft, http, MICROSOFT_CLIENT_ID, MICROSOFT_CLIENT_SECRET)


@pytest.fixture
def goog(google: OAuthServer, http: requests.Session) -> Flow:
    return Flow(google, http, GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET)


@pytest.fixture
def graph(registry: TokenRegistry, started: Callable[[Any], Any]) -> GraphServer:
    return started(GraphServer(registry, aliases=[ALIAS]))


@pytest.fixture
def gmail(registry: TokenRegistry, started: Callable[[Any], Any]) -> GmailServer:
    return started(GmailServer(registry, aliases=[ALIAS]))


@pytest.fixture
def client_tls(ca_bundle: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_bundle))


@pytest.fixture
def smtp_for(
    registry: TokenRegistry, server_tls: ssl.SSLContext, started: Callable[[Any], Any]
) -> Callable[..., XOAuth2SmtpServer]:
    def make(flavor: str, **options: Any) -> XOAuth2SmtpServer:
        options.setdefault("aliases", [ALIAS])
        return started(XOAuth2SmtpServer(registry, server_context=server_tls, flavor=flavor, **options))  # type: ignore[arg-type]

    return make


# --- authorization code with PKCE --------------------------------------------------------------------


def test_microsoft_code_flow_with_pkce_issues_tokens(ms: Flow, registry: TokenRegistry) -> None:
    verifier, challenge = pkce()
    query = ms.authorize(MS_GRAPH_SCOPE, challenge=challenge, login_hint=ACCOUNT, prompt="select_account")
    assert query["state"] == "state-1" and query["code"]

    reply = ms.exchange(query["code"], verifier)

    assert reply.status_code == 200, reply.text
    assert reply.headers["Cache-Control"] == "no-store"
    body = reply.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600 and body["ext_expires_in"] == 3600
    assert body["refresh_token"]
    scopes = body["scope"].split()
    assert "https://graph.microsoft.com/Mail.Send" in scopes and "offline_access" not in scopes
    assert registry.validate(body["access_token"]) == ACCOUNT
    assert ms.server.validate(body["access_token"]) == ACCOUNT
    assert ms.server.authorize_requests[-1]["login_hint"] == ACCOUNT


def test_google_code_flow_with_basic_client_auth(goog: Flow) -> None:
    verifier, challenge = pkce()
    query = goog.authorize(GOOGLE_SCOPE, challenge=challenge, access_type="offline", prompt="consent")
    assert query["code"].startswith("4/")
    assert "https://www.googleapis.com/auth/userinfo.email" in query["scope"].split()

    reply = goog.token(
        basic=True,
        grant_type="authorization_code",
        code=query["code"],
        redirect_uri=REDIRECT,
        code_verifier=verifier,
    )

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["access_token"].startswith("ya29.") and body["refresh_token"]
    assert "ext_expires_in" not in body
    assert goog.server.validate(body["access_token"]) == ACCOUNT


def test_a_code_is_single_use_and_its_reuse_revokes_what_it_gave(ms: Flow, registry: TokenRegistry) -> None:
    verifier, challenge = pkce()
    code = ms.authorize(MS_GRAPH_SCOPE, challenge=challenge)["code"]
    first = ms.exchange(code, verifier).json()

    again = ms.exchange(code, verifier)

    assert again.status_code == 400
    body = again.json()
    assert body["error"] == "invalid_grant"
    assert body["error_codes"] == [54005]
    assert body["error_description"].startswith("AADSTS54005:")
    assert {"timestamp", "trace_id", "correlation_id", "error_uri"} <= set(body)
    assert registry.validate(first["access_token"]) is None
    assert ms.refresh(first["refresh_token"]).json()["error"] == "invalid_grant"


@pytest.mark.parametrize("flavor", ["microsoft", "google"])
def test_the_verifier_must_match_the_challenge(flavor: str, ms: Flow, goog: Flow) -> None:
    flow = ms if flavor == "microsoft" else goog
    _, challenge = pkce()
    code = flow.authorize(GOOGLE_SCOPE if flavor == "google" else MS_GRAPH_SCOPE, challenge=challenge)["code"]

    wrong = flow.exchange(code, secrets.token_urlsafe(48))
    missing = flow.token(grant_type="authorization_code", code=code, redirect_uri=REDIRECT)

    assert wrong.status_code == missing.status_code == 400
    assert wrong.json()["error"] == missing.json()["error"] == "invalid_grant"
    if flavor == "microsoft":
        assert wrong.json()["error_codes"] == [501481]
    else:
        assert wrong.json()["error_description"] == "Invalid code verifier."
        assert missing.json()["error_description"] == "Missing code verifier."


def test_the_redirect_uri_must_be_the_authorization_requests(ms: Flow, goog: Flow) -> None:
    for flow, scope, error in (
        (ms, MS_GRAPH_SCOPE, "invalid_grant"),
        (goog, GOOGLE_SCOPE, "redirect_uri_mismatch"),
    ):
        verifier, challenge = pkce()
        code = flow.authorize(scope, challenge=challenge)["code"]
        reply = flow.token(
            grant_type="authorization_code",
            code=code,
            redirect_uri=REDIRECT + "/other",
            code_verifier=verifier,
        )
        assert reply.status_code == 400 and reply.json()["error"] == error


def test_a_code_expires_after_its_short_lifetime(ms: Flow, clock: Clock) -> None:
    verifier, challenge = pkce()
    code = ms.authorize(MS_GRAPH_SCOPE, challenge=challenge)["code"]
    clock.advance(ms.server.code_lifetime + 1)

    reply = ms.exchange(code, verifier)

    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_grant" and reply.json()["error_codes"] == [70008]


def test_unknown_client_or_unregistered_redirect_uri_is_an_error_page_never_a_redirect(ms: Flow) -> None:
    _, challenge = pkce()
    unknown = ms.http.get(
        ms.server.authorize_url,
        params={
            "client_id": "nobody",
            "redirect_uri": REDIRECT,
            "response_type": "code",
            "scope": "Mail.Send",
        },
        allow_redirects=False,
    )
    elsewhere = ms.http.get(
        ms.server.authorize_url,
        params={
            "client_id": MICROSOFT_CLIENT_ID,
            "redirect_uri": "http://127.0.0.1:9/evil",
            "response_type": "code",
            "scope": "Mail.Send",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
    )

    for reply in (unknown, elsewhere):
        assert reply.status_code in (400, 401)
        assert "Location" not in reply.headers
        assert reply.headers["Content-Type"].startswith("text/html")
    assert "AADSTS50011" in elsewhere.text


def test_other_authorization_errors_come_back_to_the_redirect_uri_with_the_state(ms: Flow) -> None:
    _, challenge = pkce()
    wrong_type = ms.authorize(MS_GRAPH_SCOPE, challenge=challenge, response_type="token")
    no_pkce = ms.authorize(MS_GRAPH_SCOPE)

    assert wrong_type["error"] == "unsupported_response_type" and wrong_type["state"] == "state-1"
    assert no_pkce["error"] == "invalid_request" and "code" not in no_pkce


def test_decline_next_answers_access_denied_once(ms: Flow) -> None:
    _, challenge = pkce()
    ms.server.decline_next()

    declined = ms.authorize(MS_GRAPH_SCOPE, challenge=challenge)
    accepted = ms.authorize(MS_GRAPH_SCOPE, challenge=challenge)

    assert declined["error"] == "access_denied" and declined["state"] == "state-1"
    assert "AADSTS65004" in declined["error_description"]
    assert "code" in accepted


def test_the_interactive_page_offers_approve_and_decline(goog: Flow) -> None:
    verifier, challenge = pkce()
    page = goog.authorize_reply(GOOGLE_SCOPE, challenge=challenge, interactive="1")
    assert page.status_code == 200 and ACCOUNT in page.text

    links = {
        name: href.replace("&amp;", "&")
        for name in ("approve", "decline")
        for href in [page.text.split(f"id='{name}' href='", 1)[1].split("'", 1)[0]]
    }
    approved = goog.http.get(urljoin(goog.server.url, links["approve"]), allow_redirects=False)
    declined = goog.http.get(urljoin(goog.server.url, links["decline"]), allow_redirects=False)

    code = dict(parse_qsl(urlsplit(approved.headers["Location"]).query))["code"]
    assert goog.exchange(code, verifier).status_code == 200
    assert dict(parse_qsl(urlsplit(declined.headers["Location"]).query))["error"] == "access_denied"


# --- refresh, rotation, revocation --------------------------------------------------------------------


def test_microsoft_rotates_refresh_tokens_and_refuses_the_old_one(ms: Flow, registry: TokenRegistry) -> None:
    tokens = ms.connect(MS_GRAPH_SCOPE)

    renewed = ms.refresh(tokens["refresh_token"])
    assert renewed.status_code == 200, renewed.text
    rotated = renewed.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert registry.validate(rotated["access_token"]) == ACCOUNT

    old = ms.refresh(tokens["refresh_token"])
    assert old.status_code == 400 and old.json()["error"] == "invalid_grant"

    assert ms.refresh(rotated["refresh_token"]).status_code == 200
    assert ms.server.refresh_count == 3
    assert [call.status for call in ms.server.token_calls] == [200, 200, 400, 200]


def test_google_keeps_its_refresh_token(goog: Flow) -> None:
    tokens = goog.connect(GOOGLE_SCOPE, access_type="offline")

    first, second = goog.refresh(tokens["refresh_token"]), goog.refresh(tokens["refresh_token"])

    assert first.status_code == second.status_code == 200
    assert "refresh_token" not in first.json()
    assert first.json()["access_token"] != second.json()["access_token"]


def test_refresh_tokens_come_only_with_offline_access_or_access_type_offline(ms: Flow, goog: Flow) -> None:
    assert "refresh_token" not in ms.connect("openid https://graph.microsoft.com/Mail.Send")
    assert "refresh_token" not in goog.connect(GOOGLE_SCOPE)
    assert "refresh_token" in goog.connect(GOOGLE_SCOPE, access_type="offline")
    # Google gives a refresh token on the first consent only, unless asked again with prompt=consent.
    assert "refresh_token" not in goog.connect(GOOGLE_SCOPE, access_type="offline")
    assert "refresh_token" in goog.connect(GOOGLE_SCOPE, access_type="offline", prompt="consent")


def test_revoke_all_makes_refresh_answer_invalid_grant(ms: Flow, registry: TokenRegistry) -> None:
    tokens = ms.connect(MS_GRAPH_SCOPE)

    assert ms.server.revoke_all(ACCOUNT) == 1
    reply = ms.refresh(tokens["refresh_token"])

    assert reply.status_code == 400
    assert reply.json()["error"] == "invalid_grant" and reply.json()["error_codes"] == [50173]
    assert registry.validate(tokens["access_token"]) is None


def test_google_revoke_endpoint_revokes_the_grant(goog: Flow) -> None:
    tokens = goog.connect(GOOGLE_SCOPE, access_type="offline")

    revoked = goog.http.post(goog.server.revoke_url, data={"token": tokens["refresh_token"]})
    again = goog.http.post(goog.server.revoke_url, data={"token": tokens["refresh_token"]})
    refresh = goog.refresh(tokens["refresh_token"])
    userinfo = goog.http.get(goog.server.userinfo_url, headers=bearer(tokens["access_token"]))

    assert revoked.status_code == 200
    assert again.status_code == 400 and again.json()["error"] == "invalid_token"
    assert refresh.status_code == 400
    assert refresh.json() == {
        "error": "invalid_grant",
        "error_description": "Token has been expired or revoked.",
    }
    assert userinfo.status_code == 401


def test_a_refresh_for_another_resource_gets_a_token_for_that_resource_only(ms: Flow) -> None:
    tokens = ms.connect(MS_ALL_SCOPE)

    smtp = ms.refresh(tokens["refresh_token"], scope="offline_access https://outlook.office.com/SMTP.Send")
    unconsented = ms.refresh(smtp.json()["refresh_token"], scope="https://graph.microsoft.com/Calendars.Read")

    assert smtp.status_code == 200 and smtp.json()["scope"] == "https://outlook.office.com/SMTP.Send"
    assert unconsented.status_code == 400
    assert unconsented.json()["error"] == "invalid_grant" and unconsented.json()["error_codes"] == [65001]


def test_expired_access_tokens_are_refused_until_refreshed(
    ms: Flow, graph: GraphServer, http: requests.Session
) -> None:
    tokens = ms.connect(MS_GRAPH_SCOPE)
    assert ms.server.expire_access_tokens() == 1

    expired = http.get(f"{graph.base_url}/me", headers=bearer(tokens["access_token"]))
    fresh = ms.refresh(tokens["refresh_token"]).json()["access_token"]

    assert expired.status_code == 401
    assert graph_error(expired)["message"] == "Lifetime validation failed, the token is expired."
    assert http.get(f"{graph.base_url}/me", headers=bearer(fresh)).status_code == 200


# --- token endpoint errors ---------------------------------------------------------------------------


def test_client_authentication_errors(ms: Flow, goog: Flow) -> None:
    bad_secret = ms.http.post(
        ms.server.token_url,
        data={"client_id": MICROSOFT_CLIENT_ID, "client_secret": "wrong", "grant_type": "refresh_token"},
    )
    unknown = ms.http.post(ms.server.token_url, data={"client_id": "nobody", "grant_type": "refresh_token"})
    basic = goog.http.post(
        goog.server.token_url, data={"grant_type": "refresh_token"}, auth=(GOOGLE_CLIENT_ID, "x")
    )

    assert bad_secret.status_code == unknown.status_code == basic.status_code == 401
    assert bad_secret.json()["error"] == "invalid_client" and bad_secret.json()["error_codes"] == [7000215]
    assert unknown.json()["error_codes"] == [700016]
    assert basic.json() == {"error": "invalid_client", "error_description": "Unauthorized"}
    assert basic.headers["WWW-Authenticate"].startswith("Basic")


def test_malformed_token_requests(ms: Flow) -> None:
    unsupported = ms.token(grant_type="password", username=ACCOUNT, password="x")
    missing = ms.token()
    as_json = ms.http.post(
        ms.server.token_url, json={"client_id": MICROSOFT_CLIENT_ID, "grant_type": "authorization_code"}
    )
    no_code = ms.token(grant_type="authorization_code", redirect_uri=REDIRECT)

    assert unsupported.status_code == 400 and unsupported.json()["error"] == "unsupported_grant_type"
    assert missing.json()["error"] == "invalid_request"
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    assert no_code.json()["error"] == "invalid_request" and no_code.json()["error_codes"] == [900144]
    assert ms.token(grant_type="authorization_code", code="nope", redirect_uri=REDIRECT).json()["error"] == (
        "invalid_grant"
    )


def test_client_credentials_for_app_only_sending(ms: Flow, goog: Flow, registry: TokenRegistry) -> None:
    app = ms.token(grant_type="client_credentials", scope="https://graph.microsoft.com/.default")
    not_default = ms.token(grant_type="client_credentials", scope="https://graph.microsoft.com/Mail.Send")
    at_google = goog.token(grant_type="client_credentials", scope="https://mail.google.com/")

    assert app.status_code == 200, app.text
    assert "refresh_token" not in app.json()
    token = registry.lookup(app.json()["access_token"])
    assert token is not None and token.app_only
    assert token.has_any_scope(["https://graph.microsoft.com/Mail.Send"])
    assert registry.validate(app.json()["access_token"]) is None
    assert not_default.json()["error"] == "invalid_scope" and not_default.json()["error_codes"] == [1002012]
    assert at_google.json()["error"] == "unsupported_grant_type"


def test_fail_next_makes_the_token_endpoint_unavailable_once(ms: Flow) -> None:
    tokens = ms.connect(MS_GRAPH_SCOPE)
    ms.server.fail_next(503, retry_after=1)

    failed = ms.refresh(tokens["refresh_token"])
    recovered = ms.refresh(tokens["refresh_token"])

    assert failed.status_code == 503 and failed.headers["Retry-After"] == "1"
    assert failed.json()["error"] == "temporarily_unavailable"
    assert recovered.status_code == 200  # the failed call did not consume the refresh token
    assert ms.server.token_requests == 3


def test_google_userinfo(goog: Flow, ms: Flow) -> None:
    with_email = goog.connect(GOOGLE_SCOPE)["access_token"]
    without_email = goog.connect("https://www.googleapis.com/auth/gmail.send")["access_token"]
    microsoft_token = ms.connect(MS_GRAPH_SCOPE)["access_token"]

    info = goog.http.get(goog.server.userinfo_url, headers=bearer(with_email))
    bare = goog.http.get(goog.server.userinfo_url, headers=bearer(without_email))
    anonymous = goog.http.get(goog.server.userinfo_url)
    foreign = goog.http.get(goog.server.userinfo_url, headers=bearer(microsoft_token))

    assert info.status_code == 200
    assert info.json()["email"] == ACCOUNT and info.json()["email_verified"] is True and info.json()["sub"]
    assert "email" not in bare.json()
    assert anonymous.status_code == foreign.status_code == 401
    assert 'error="invalid_token"' in anonymous.headers["WWW-Authenticate"]


def id_claims(flow: Flow, id_token: str) -> dict[str, Any]:
    """The claims of an ID token, after checking its RS256 signature against the server's JWKS."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    def decode(part: str) -> bytes:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

    header, payload, signature = id_token.split(".")
    [key] = flow.http.get(flow.server.jwks_url).json()["keys"]
    assert json.loads(decode(header))["kid"] == key["kid"]
    public = rsa.RSAPublicNumbers(
        int.from_bytes(decode(key["e"])), int.from_bytes(decode(key["n"]))
    ).public_key()
    public.verify(decode(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return json.loads(decode(payload))


def test_id_tokens_are_signed_and_carry_the_claims_of_the_scopes(
    ms: Flow, goog: Flow, graph: GraphServer, http: requests.Session
) -> None:
    smtp_scope = "offline_access https://outlook.office.com/SMTP.Send openid email"
    microsoft = ms.connect(smtp_scope, nonce="n-1")
    google = goog.connect(GOOGLE_SCOPE, access_type="offline", prompt="consent")
    without_openid = ms.connect("offline_access Mail.Send")

    claims = id_claims(ms, microsoft["id_token"])
    assert claims["email"] == ACCOUNT and claims["aud"] == MICROSOFT_CLIENT_ID and claims["nonce"] == "n-1"
    assert claims["iss"] == ms.server.issuer and claims["ver"] == "2.0" and claims["oid"]
    assert "preferred_username" not in claims  # that one comes with the profile scope
    google_claims = id_claims(goog, google["id_token"])
    assert google_claims["email"] == ACCOUNT and google_claims["email_verified"] is True
    assert google_claims["aud"] == google_claims["azp"] == GOOGLE_CLIENT_ID
    assert "id_token" not in without_openid
    assert "id_token" in goog.refresh(google["refresh_token"]).json()
    # The Outlook token of that consent is not a Graph token.
    at_graph = http.get(f"{graph.base_url}/me", headers=bearer(microsoft["access_token"]))
    assert at_graph.status_code == 401 and graph_error(at_graph)["message"].endswith("Invalid audience.")


def test_discovery_documents(ms: Flow, goog: Flow) -> None:
    microsoft = ms.http.get(f"{ms.server.url}/common/v2.0/.well-known/openid-configuration").json()
    google = goog.http.get(f"{goog.server.url}/.well-known/openid-configuration").json()

    assert microsoft["token_endpoint"] == ms.server.token_url
    assert google["revocation_endpoint"] == goog.server.revoke_url
    assert "S256" in google["code_challenge_methods_supported"]


# --- Microsoft Graph -----------------------------------------------------------------------------------


def test_graph_me_and_send_mail(ms: Flow, graph: GraphServer, http: requests.Session) -> None:
    token = ms.connect(MS_GRAPH_SCOPE)["access_token"]
    raw = mime()

    me = http.get(f"{graph.base_url}/me", headers=bearer(token))
    sent = graph_send(http, graph, token, raw)

    assert me.status_code == 200
    assert me.json()["mail"] == me.json()["userPrincipalName"] == ACCOUNT and me.json()["id"]
    assert sent.status_code == 202 and sent.content == b""
    [delivered] = graph.messages
    assert delivered.raw == raw and delivered.account == ACCOUNT and delivered.via == "graph.sendMail"
    assert delivered.message["Subject"] == "Invoice 1042" and delivered.recipients == (CUSTOMER,)
    assert graph.sent_items == [delivered]


def test_graph_authentication_errors(
    ms: Flow, goog: Flow, graph: GraphServer, http: requests.Session, registry: TokenRegistry
) -> None:
    smtp_only = ms.refresh(
        ms.connect(MS_ALL_SCOPE)["refresh_token"], scope="https://outlook.office.com/SMTP.Send"
    )
    google_token = goog.connect(GOOGLE_SCOPE)["access_token"]

    cases = {
        "missing": http.post(f"{graph.base_url}/me/sendMail", data=base64.b64encode(mime())),
        "unknown": graph_send(http, graph, "not-a-token", mime()),
        "google": graph_send(http, graph, google_token, mime()),
        "audience": graph_send(http, graph, smtp_only.json()["access_token"], mime()),
    }

    for name, reply in cases.items():
        assert reply.status_code == 401, name
        assert graph_error(reply)["code"] == "InvalidAuthenticationToken", name
        assert reply.headers["WWW-Authenticate"].startswith("Bearer"), name
    assert graph_error(cases["missing"])["message"] == "Access token is empty."
    assert graph_error(cases["audience"])["message"].endswith("Invalid audience.")
    assert graph.messages == []


def test_graph_send_as_is_the_mailbox_or_an_alias(
    ms: Flow, graph: GraphServer, http: requests.Session
) -> None:
    token = ms.connect(MS_GRAPH_SCOPE)["access_token"]

    denied = graph_send(http, graph, token, mime(sender="ceo@elsewhere.example"))
    alias = graph_send(http, graph, token, mime(sender=f"Invoices <{ALIAS}>"))

    assert denied.status_code == 403 and graph_error(denied)["code"] == "ErrorSendAsDenied"
    assert alias.status_code == 202
    assert [m.from_addresses for m in graph.messages] == [[ALIAS]]


def test_graph_throttling_and_outage(ms: Flow, graph: GraphServer, http: requests.Session) -> None:
    token = ms.connect(MS_GRAPH_SCOPE)["access_token"]
    graph.throttle_next(retry_after=2)
    graph.fail_next(503)

    throttled = graph_send(http, graph, token, mime())
    unavailable = graph_send(http, graph, token, mime())
    accepted = graph_send(http, graph, token, mime())

    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    assert graph_error(throttled)["code"] == "ApplicationThrottled"
    assert unavailable.status_code == 503 and graph_error(unavailable)["code"] == "ServiceNotAvailable"
    assert accepted.status_code == 202 and len(graph.messages) == 1
    assert [c.status for c in graph.calls] == [429, 503, 202]


def test_graph_refuses_a_request_over_4_mb(ms: Flow, graph: GraphServer, http: requests.Session) -> None:
    token = ms.connect(MS_GRAPH_SCOPE)["access_token"]
    big = mime(attachment=secrets.token_bytes(int(3.2 * MB)))  # base64 twice over: well above 4 MB

    reply = graph_send(http, graph, token, big)

    assert reply.status_code == 413 and graph_error(reply)["code"] == "RequestEntityTooLarge"
    assert graph.messages == []


def test_graph_large_attachment_through_draft_and_upload_session(
    ms: Flow, graph: GraphServer, http: requests.Session
) -> None:
    token = ms.connect(MS_ALL_SCOPE)["access_token"]
    payload = secrets.token_bytes(int(3.5 * MB))
    draft = http.post(
        f"{graph.base_url}/me/messages",
        data=base64.b64encode(mime()),
        headers={**bearer(token), "Content-Type": "text/plain"},
    )
    assert draft.status_code == 201, draft.text
    draft_id = draft.json()["id"]
    assert draft.json()["isDraft"] is True

    session = http.post(
        f"{graph.base_url}/me/messages/{draft_id}/attachments/createUploadSession",
        json={"AttachmentItem": {"attachmentType": "file", "name": "plans.pdf", "size": len(payload)}},
        headers=bearer(token),
    )
    assert session.status_code == 201, session.text
    assert session.json()["nextExpectedRanges"] == ["0-"]
    upload_url = session.json()["uploadUrl"]
    chunk = 2 * MB
    first = http.put(
        upload_url,
        data=payload[:chunk],
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes 0-{chunk - 1}/{len(payload)}",
        },
    )
    out_of_order = http.put(
        upload_url,
        data=payload[:10],
        headers={"Content-Type": "application/octet-stream", "Content-Range": f"bytes 0-9/{len(payload)}"},
    )
    last = http.put(
        upload_url,
        data=payload[chunk:],
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Range": f"bytes {chunk}-{len(payload) - 1}/{len(payload)}",
        },
    )
    sent = http.post(f"{graph.base_url}/me/messages/{draft_id}/send", headers=bearer(token))

    assert first.status_code == 200 and first.json()["nextExpectedRanges"] == [str(chunk)]
    assert out_of_order.status_code == 416
    assert last.status_code == 201 and "Attachments('" in last.headers["Location"]
    assert sent.status_code == 202
    [delivered] = graph.messages
    assert delivered.via == "graph.draft"
    [attachment] = list(delivered.message.iter_attachments())
    assert attachment.get_filename() == "plans.pdf" and attachment.get_content() == payload
    assert draft_id not in graph.drafts


def test_graph_upload_sessions_are_for_3_mb_and_more(
    ms: Flow, graph: GraphServer, http: requests.Session
) -> None:
    token = ms.connect(MS_ALL_SCOPE)["access_token"]
    draft_id = http.post(
        f"{graph.base_url}/me/messages",
        data=base64.b64encode(mime()),
        headers={**bearer(token), "Content-Type": "text/plain"},
    ).json()["id"]

    small = http.post(
        f"{graph.base_url}/me/messages/{draft_id}/attachments/createUploadSession",
        json={"AttachmentItem": {"attachmentType": "file", "name": "a.pdf", "size": 1000}},
        headers=bearer(token),
    )
    unknown = http.post(f"{graph.base_url}/me/messages/AAMkADnothing/send", headers=bearer(token))

    assert small.status_code == 400
    assert graph_error(small)["code"] == "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize"
    assert unknown.status_code == 404 and graph_error(unknown)["code"] == "ErrorItemNotFound"


def test_graph_checks_the_permissions_of_the_token(
    ms: Flow, graph: GraphServer, http: requests.Session
) -> None:
    send_only = ms.connect("offline_access Mail.Send")["access_token"]

    sent = graph_send(http, graph, send_only, mime())
    draft = http.post(
        f"{graph.base_url}/me/messages",
        data=base64.b64encode(mime()),
        headers={**bearer(send_only), "Content-Type": "text/plain"},
    )
    me = http.get(f"{graph.base_url}/me", headers=bearer(send_only))

    assert sent.status_code == 202
    assert draft.status_code == me.status_code == 403
    assert graph_error(draft)["code"] == graph_error(me)["code"] == "ErrorAccessDenied"


def test_graph_with_an_app_only_token(ms: Flow, graph: GraphServer, http: requests.Session) -> None:
    token = ms.token(grant_type="client_credentials", scope="https://graph.microsoft.com/.default").json()

    me = http.get(f"{graph.base_url}/me", headers=bearer(token["access_token"]))
    sent = graph_send(http, graph, token["access_token"], mime(), path=f"/users/{ACCOUNT}/sendMail")

    assert me.status_code == 400 and "delegated" in graph_error(me)["message"]
    assert sent.status_code == 202 and graph.messages[0].account == ACCOUNT


def test_graph_refuses_bad_mime(ms: Flow, graph: GraphServer, http: requests.Session) -> None:
    token = ms.connect(MS_GRAPH_SCOPE)["access_token"]

    not_base64 = http.post(
        f"{graph.base_url}/me/sendMail", data=mime(), headers={**bearer(token), "Content-Type": "text/plain"}
    )
    no_recipient = graph_send(http, graph, token, mime(to=""))

    assert (
        not_base64.status_code == 400
        and graph_error(not_base64)["code"] == "ErrorMimeContentInvalidBase64String"
    )
    assert no_recipient.status_code == 400 and graph_error(no_recipient)["code"] == "ErrorInvalidRecipients"


# --- Gmail API -----------------------------------------------------------------------------------------


def test_gmail_send_raw(goog: Flow, gmail: GmailServer, http: requests.Session) -> None:
    token = goog.connect(GOOGLE_SCOPE)["access_token"]
    raw = mime()

    reply = gmail_send(http, gmail, token, raw)

    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["labelIds"] == ["SENT"] and body["id"] and body["threadId"] == body["id"]
    [delivered] = gmail.messages
    assert delivered.raw == raw and delivered.message["To"] == CUSTOMER and delivered.id == body["id"]


def test_gmail_media_and_multipart_uploads(goog: Flow, gmail: GmailServer, http: requests.Session) -> None:
    token = goog.connect(GOOGLE_SCOPE)["access_token"]
    raw = mime(attachment=b"%PDF-1.4 invoice")
    boundary = "upload-boundary-1"
    related = (
        (
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
            '{"threadId": "thread-7"}\r\n'
            f"--{boundary}\r\nContent-Type: message/rfc822\r\n\r\n"
        ).encode()
        + raw
        + f"\r\n--{boundary}--\r\n".encode()
    )
    upload = f"{gmail.base_url}/upload/gmail/v1/users/me/messages/send"

    media = http.post(
        upload,
        params={"uploadType": "media"},
        data=raw,
        headers={**bearer(token), "Content-Type": "message/rfc822"},
    )
    multipart = http.post(
        upload,
        params={"uploadType": "multipart"},
        data=related,
        headers={**bearer(token), "Content-Type": f"multipart/related; boundary={boundary}"},
    )

    assert media.status_code == 200 and media.json()["labelIds"] == ["SENT"]
    assert multipart.status_code == 200 and multipart.json()["threadId"] == "thread-7"
    assert [m.raw for m in gmail.messages] == [raw, raw]
    assert [m.via for m in gmail.messages] == ["gmail.upload", "gmail.upload"]


def test_gmail_authentication_errors(
    goog: Flow, ms: Flow, gmail: GmailServer, http: requests.Session
) -> None:
    url = f"{gmail.base_url}/gmail/v1/users/me/messages/send"
    body = {"raw": base64.urlsafe_b64encode(mime()).decode()}

    anonymous = http.post(url, json=body)
    unknown = http.post(url, json=body, headers=bearer("ya29.unknown"))
    microsoft = http.post(url, json=body, headers=bearer(ms.connect(MS_GRAPH_SCOPE)["access_token"]))

    assert google_error(anonymous)["errors"][0]["reason"] == "required"
    for reply in (unknown, microsoft):
        error = google_error(reply)
        assert reply.status_code == 401 and error["status"] == "UNAUTHENTICATED"
        assert error["errors"][0]["reason"] == "authError"
        assert error["message"].startswith("Request had invalid authentication credentials.")
    assert gmail.messages == []


def test_gmail_send_as_and_delegation(goog: Flow, gmail: GmailServer, http: requests.Session) -> None:
    token = goog.connect(GOOGLE_SCOPE)["access_token"]

    stranger = gmail_send(http, gmail, token, mime(sender="ceo@elsewhere.example"))
    alias = gmail_send(http, gmail, token, mime(sender=ALIAS))
    other_user = http.post(
        f"{gmail.base_url}/gmail/v1/users/someone@demo.test/messages/send",
        json={"raw": base64.urlsafe_b64encode(mime()).decode()},
        headers=bearer(token),
    )

    assert stranger.status_code == 403
    assert google_error(stranger)["status"] == "PERMISSION_DENIED"
    assert google_error(stranger)["errors"][0]["reason"] == "forbidden"
    assert alias.status_code == 200
    assert other_user.status_code == 403 and "Delegation denied" in google_error(other_user)["message"]


def test_gmail_can_rewrite_an_unverified_from_as_gmail_does(
    goog: Flow, registry: TokenRegistry, started: Callable[[Any], Any], http: requests.Session
) -> None:
    gmail = started(GmailServer(registry, from_policy="rewrite"))
    token = goog.connect(GOOGLE_SCOPE)["access_token"]

    reply = gmail_send(http, gmail, token, mime(sender="Acme Billing <ceo@elsewhere.example>"))

    assert reply.status_code == 200
    assert gmail.messages[0].from_addresses == [ACCOUNT]
    assert gmail.messages[0].message["From"].addresses[0].display_name == "Acme Billing"


def test_gmail_rate_limit_and_outage(goog: Flow, gmail: GmailServer, http: requests.Session) -> None:
    token = goog.connect(GOOGLE_SCOPE)["access_token"]
    gmail.throttle_next()
    gmail.fail_next(503)

    throttled = gmail_send(http, gmail, token, mime())
    unavailable = gmail_send(http, gmail, token, mime())
    accepted = gmail_send(http, gmail, token, mime())

    error = google_error(throttled)
    assert throttled.status_code == 429 and error["status"] == "RESOURCE_EXHAUSTED"
    assert (
        error["errors"][0]["reason"] == "rateLimitExceeded" and error["errors"][0]["domain"] == "usageLimits"
    )
    assert google_error(unavailable)["status"] == "UNAVAILABLE"
    assert accepted.status_code == 200 and len(gmail.messages) == 1


def test_gmail_scopes_and_bad_requests(goog: Flow, gmail: GmailServer, http: requests.Session) -> None:
    send_only = goog.connect(GOOGLE_SCOPE)["access_token"]
    readonly = goog.connect("https://www.googleapis.com/auth/gmail.readonly")["access_token"]

    profile = http.get(f"{gmail.base_url}/gmail/v1/users/me/profile", headers=bearer(send_only))
    cannot_send = gmail_send(http, gmail, readonly, mime())
    readable = http.get(f"{gmail.base_url}/gmail/v1/users/me/profile", headers=bearer(readonly))
    no_raw = http.post(
        f"{gmail.base_url}/gmail/v1/users/me/messages/send", json={}, headers=bearer(send_only)
    )
    no_recipient = gmail_send(http, gmail, send_only, mime(to=""))

    assert profile.status_code == cannot_send.status_code == 403
    assert google_error(profile)["errors"][0]["reason"] == "insufficientPermissions"
    assert readable.status_code == 200 and readable.json()["emailAddress"] == ACCOUNT
    assert google_error(no_raw)["status"] == "INVALID_ARGUMENT" and no_raw.status_code == 400
    assert (
        no_recipient.status_code == 400
        and google_error(no_recipient)["message"] == "Recipient address required"
    )


# --- SMTP with AUTH XOAUTH2 --------------------------------------------------------------------------


def smtp_session(server: XOAuth2SmtpServer, client_tls: ssl.SSLContext) -> smtplib.SMTP:
    smtp = smtplib.SMTP(server.host, server.port, timeout=5)
    smtp.ehlo("client.test")
    smtp.starttls(context=client_tls)
    smtp.ehlo("client.test")
    return smtp


def test_microsoft_smtp_takes_an_outlook_token(
    ms: Flow, smtp_for: Callable[..., XOAuth2SmtpServer], client_tls: ssl.SSLContext
) -> None:
    server = smtp_for("microsoft")
    tokens = ms.connect(MS_ALL_SCOPE)
    token = ms.refresh(
        tokens["refresh_token"], scope="offline_access https://outlook.office.com/SMTP.Send"
    ).json()
    sasl = xoauth2_string(ACCOUNT, token["access_token"])
    raw = mime()

    with smtp_session(server, client_tls) as smtp:
        assert "XOAUTH2" in smtp.esmtp_features["auth"]
        code, _ = smtp.auth("XOAUTH2", lambda challenge=None: sasl)
        refused = smtp.sendmail(ACCOUNT, [CUSTOMER, "bob@customer.example"], raw)

    assert code == 235 and refused == {}
    [delivered] = server.messages
    assert delivered.mail_from == ACCOUNT and delivered.recipients == (CUSTOMER, "bob@customer.example")
    assert delivered.auth_user == ACCOUNT and delivered.tls
    assert delivered.message["Subject"] == "Invoice 1042"
    assert server.auth_attempts[-1].success


def test_microsoft_smtp_refuses_tokens_it_should_not_take(
    ms: Flow, goog: Flow, smtp_for: Callable[..., XOAuth2SmtpServer], client_tls: ssl.SSLContext
) -> None:
    server = smtp_for("microsoft")
    graph_token = ms.connect(MS_GRAPH_SCOPE)["access_token"]  # no SMTP.Send: a token for Graph
    google_token = goog.connect("https://mail.google.com/")["access_token"]
    outlook = ms.connect("offline_access https://outlook.office.com/SMTP.Send")["access_token"]
    cases = [
        xoauth2_string(ACCOUNT, "unknown"),
        xoauth2_string(ACCOUNT, graph_token),
        xoauth2_string(ACCOUNT, google_token),
        xoauth2_string("someone@demo.test", outlook),
        f"user={ACCOUNT}\x01auth=Basic x\x01\x01",
    ]

    for sasl in cases:
        with smtp_session(server, client_tls) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as info:
            smtp.auth("XOAUTH2", lambda challenge=None, sasl=sasl: sasl)
        assert info.value.smtp_code == 535
        assert info.value.smtp_error.startswith(b"5.7.3 Authentication unsuccessful")
    assert [a.reason for a in server.auth_attempts] == [
        "unknown token",
        "token lacks the SMTP scope",
        "unknown token",
        "user= is not the token's account",
        "malformed XOAUTH2 response",
    ]


def test_google_smtp_sends_the_error_challenge_first(
    goog: Flow, smtp_for: Callable[..., XOAuth2SmtpServer], client_tls: ssl.SSLContext
) -> None:
    server = smtp_for("google")
    token = goog.connect("https://mail.google.com/", access_type="offline")
    goog.server.expire_access_tokens()
    challenges: list[bytes] = []

    def respond(challenge: bytes | None = None) -> str:
        if challenge is None:
            return xoauth2_string(ACCOUNT, token["access_token"])
        challenges.append(challenge)
        return ""  # the empty response the protocol asks for

    with smtp_session(server, client_tls) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as info:
        smtp.auth("XOAUTH2", respond)

    assert info.value.smtp_code == 535 and b"5.7.8" in info.value.smtp_error
    assert json.loads(challenges[0]) == {
        "status": "401",
        "schemes": "bearer",
        "scope": "https://mail.google.com/",
    }
    assert server.auth_attempts[-1].reason == "expired token"

    fresh = goog.refresh(token["refresh_token"]).json()["access_token"]
    with smtp_session(server, client_tls) as smtp:
        code, _ = smtp.auth("XOAUTH2", lambda challenge=None: xoauth2_string(ACCOUNT, fresh))
        smtp.sendmail(ALIAS, [CUSTOMER], mime(sender=ALIAS))
    assert code == 235 and server.messages[0].mail_from == ALIAS


def test_smtp_needs_starttls_and_auth_and_the_right_sender(
    ms: Flow, smtp_for: Callable[..., XOAuth2SmtpServer], client_tls: ssl.SSLContext
) -> None:
    server = smtp_for("microsoft")
    token = ms.connect("offline_access https://outlook.office.com/SMTP.Send")["access_token"]

    with smtplib.SMTP(server.host, server.port, timeout=5) as plain:
        plain.ehlo("client.test")
        assert "auth" not in plain.esmtp_features and plain.has_extn("starttls")
        assert plain.mail(ACCOUNT)[0] == 530

    with smtp_session(server, client_tls) as smtp:
        assert smtp.mail(ACCOUNT)[0] == 530  # not authenticated yet
        with pytest.raises(smtplib.SMTPAuthenticationError) as basic:
            smtp.login(ACCOUNT, "app-password")
        assert b"basic authentication is disabled" in basic.value.smtp_error
        smtp.auth("XOAUTH2", lambda challenge=None: xoauth2_string(ACCOUNT, token))
        code, reply = smtp.mail("ceo@elsewhere.example")
        assert code == 550 and b"5.7.60" in reply
        smtp.rset()
        with pytest.raises(smtplib.SMTPDataError) as header:
            smtp.sendmail(ACCOUNT, [CUSTOMER], mime(sender="ceo@elsewhere.example"))
        assert header.value.smtp_code == 554 and b"SendAsDenied" in header.value.smtp_error
    assert server.messages == []


def test_smtp_with_an_app_only_token_names_the_mailbox(
    ms: Flow, smtp_for: Callable[..., XOAuth2SmtpServer], client_tls: ssl.SSLContext
) -> None:
    server = smtp_for("microsoft")
    app = ms.token(grant_type="client_credentials", scope="https://outlook.office365.com/.default").json()

    with smtp_session(server, client_tls) as smtp:
        smtp.auth("XOAUTH2", lambda challenge=None: xoauth2_string(ACCOUNT, app["access_token"]))
        smtp.sendmail(ACCOUNT, [CUSTOMER], mime())

    assert server.messages[0].auth_user == ACCOUNT


# --- the bundle --------------------------------------------------------------------------------------


def test_the_bundle_runs_both_providers_end_to_end(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext, http: requests.Session
) -> None:
    with Providers(server_tls, aliases=[ALIAS]) as providers:
        env = providers.env()
        assert set(env) == {
            "OAUTH_MICROSOFT_AUTHORIZE_URL",
            "OAUTH_MICROSOFT_TOKEN_URL",
            "MICROSOFT_GRAPH_URL",
            "OAUTH_MICROSOFT_SMTP",
            "OAUTH_GOOGLE_AUTHORIZE_URL",
            "OAUTH_GOOGLE_TOKEN_URL",
            "OAUTH_GOOGLE_REVOKE_URL",
            "OAUTH_GOOGLE_USERINFO_URL",
            "GMAIL_API_URL",
            "OAUTH_GOOGLE_SMTP",
        }
        for name, value in env.items():
            host = value.split("//", 1)[-1].rsplit(":", 1)[0]
            assert host == "127.0.0.1", name
        clients = providers.client_env()
        ms = Flow(
            providers.microsoft,
            http,
            clients["OAUTH_MICROSOFT_CLIENT_ID"],
            clients["OAUTH_MICROSOFT_CLIENT_SECRET"],
        )
        goog = Flow(
            providers.google, http, clients["OAUTH_GOOGLE_CLIENT_ID"], clients["OAUTH_GOOGLE_CLIENT_SECRET"]
        )

        graph_token = ms.connect(MS_GRAPH_SCOPE)["access_token"]
        google = goog.connect(f"{GOOGLE_SCOPE} https://mail.google.com/", access_type="offline")
        to_graph = http.post(
            f"{env['MICROSOFT_GRAPH_URL']}/v1.0/me/sendMail",
            data=base64.b64encode(mime()),
            headers={**bearer(graph_token), "Content-Type": "text/plain"},
        )
        to_gmail = http.post(
            f"{env['GMAIL_API_URL']}/gmail/v1/users/me/messages/send",
            json={"raw": base64.urlsafe_b64encode(mime(subject="Via Gmail")).decode()},
            headers=bearer(google["access_token"]),
        )
        host, port = env["OAUTH_GOOGLE_SMTP"].rsplit(":", 1)
        with smtplib.SMTP(host, int(port), timeout=5) as smtp:
            smtp.starttls(context=client_tls)
            smtp.ehlo("client.test")  # smtplib's auth() does not; the server wants EHLO again after STARTTLS
            smtp.auth("XOAUTH2", lambda challenge=None: xoauth2_string(ACCOUNT, google["access_token"]))
            smtp.sendmail(ACCOUNT, [CUSTOMER], mime(subject="Via SMTP"))

        assert to_graph.status_code == 202 and to_gmail.status_code == 200
        assert [m.subject for m in providers.messages] == ["Invoice 1042", "Via Gmail", "Via SMTP"]


def test_the_http_servers_can_run_behind_tls(
    registry: TokenRegistry, server_tls: ssl.SSLContext, ca_bundle: Path, started: Callable[[Any], Any]
) -> None:
    server = started(OAuthServer(registry, flavor="google", ssl_context=server_tls))
    assert server.url.startswith("https://127.0.0.1:")

    with requests.Session() as session:
        session.trust_env = False
        reply = session.get(f"{server.url}/.well-known/openid-configuration", verify=str(ca_bundle))

    assert reply.status_code == 200 and reply.json()["token_endpoint"] == server.token_url
