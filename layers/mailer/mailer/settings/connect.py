"""Connecting a Microsoft 365 or Google account: the start of the authorization code flow (PKCE S256,
single-use state bound to tenant, user and profile) and the callback that completes it.

The callback is the one route without the JWT authorizer: it trusts nothing but the state.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mailer.dal.oauth_states_table import OAuthStateStore
from mailer.delivery import http
from mailer.errors import BadRequest, FieldError, Forbidden, InvalidInput
from mailer.identity import Caller
from mailer.ids import new_id, utc_now
from mailer.observability import logger
from mailer.settings.models import EmailAddress, Profile
from mailer.settings.oauth import OAuthFailure, OAuthProvider, OAuthTransport, ProviderName, Tokens
from mailer.settings.service import Connection, SettingsService, profile_ref
from mailer.settings.tokens import PROVIDER_LABELS, Grant, prime_access_token

STATE_SECONDS = 600


class OAuthStartInput(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    profile: Profile
    transport: OAuthTransport = "api"
    return_to: str | None = Field(default=None, max_length=2000)
    login_hint: EmailAddress | None = None


class OAuthStart(BaseModel):
    authorization_url: str
    state: str
    expires_at: str


@dataclass(frozen=True)
class CallbackAnswer:
    """A redirect back to the frontend, or (without return_to) a page to read."""

    location: str | None = None
    html: str | None = None


class CallbackQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    state: str | None = Field(default=None, max_length=200)
    code: str | None = Field(default=None, max_length=2048)
    error: str | None = Field(default=None, max_length=100)

    @field_validator("error")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        return value if value is None or value.replace("_", "").isalnum() else "invalid_error"


def origin_allowed(url: str, allowed: str) -> bool:
    parts = urlsplit(url)
    if not parts.hostname or parts.scheme not in ("https", "http"):
        return False
    if parts.scheme == "http" and not http.is_loopback_host(parts.hostname):
        return False
    origin = f"{parts.scheme}://{parts.netloc}".lower()
    origins = {o.strip().rstrip("/").lower() for o in allowed.split(",") if o.strip()}
    return "*" in origins or origin in origins


class OAuthConnect:
    def __init__(
        self,
        settings: SettingsService,
        states: OAuthStateStore,
        redirect_url: str | None,
        allowed_origins: str,
    ) -> None:
        self.settings = settings
        self.states = states
        self.redirect_url = redirect_url
        self.allowed_origins = allowed_origins

    def start(self, caller: Caller, provider_name: ProviderName, body: OAuthStartInput) -> OAuthStart:
        if not self.settings.may_write(caller, body.profile):
            raise Forbidden("Only an administrator can connect the company account.")
        if body.return_to and not origin_allowed(body.return_to, self.allowed_origins):
            raise InvalidInput.on(
                "return_to", "must be an https URL of an allowed origin (http only on loopback)"
            )
        provider = self.settings.oauth_provider(provider_name)
        redirect = self._redirect_url()
        state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
        expires = int(time.time()) + STATE_SECONDS
        data = {
            "tenant_id": caller.tenant_id,
            "user_id": caller.user_id,
            "email": caller.email,
            "is_admin": caller.is_admin,
            "profile": body.profile,
            "provider": provider_name,
            "transport": body.transport,
            "verifier": verifier,
            "return_to": body.return_to,
        }
        self.states.put(state, data, expires)
        url = provider.authorization_url(
            redirect_uri=redirect,
            transport=body.transport,
            state=state,
            verifier=verifier,
            login_hint=body.login_hint,
        )
        return OAuthStart(authorization_url=url, state=state, expires_at=_iso(expires))

    def callback(self, query: CallbackQuery) -> CallbackAnswer:
        if not query.state:
            raise BadRequest("state: is required", errors=[FieldError("state", "is required")])
        taken = self.states.take(query.state)
        if taken is None or taken[1] < time.time():
            raise BadRequest(
                "This sign-in link is unknown, expired or already used: start the connection again.",
                errors=[FieldError("state", "unknown, expired or already used")],
            )
        data = taken[0]
        if query.error or not query.code:
            return self._answer(data, {"oauth": "error", "reason": query.error or "no_code"})
        try:
            self._complete(data, query.code)
        except OAuthFailure as exc:
            logger.warning(
                "oauth code exchange failed", extra={"kind": exc.kind, "provider": data["provider"]}
            )
            return self._answer(data, {"oauth": "error", "reason": "token_exchange_failed"})
        except _NoAccount as exc:
            return self._answer(data, {"oauth": "error", "reason": str(exc)})
        return self._answer(data, {"oauth": "connected", "profile": data["profile"]})

    def _complete(self, data: dict[str, Any], code: str) -> None:
        provider = self.settings.oauth_provider(data["provider"])
        tokens = provider.exchange_code(code, self._redirect_url(), data["verifier"])
        if not tokens.refresh_token:
            raise _NoAccount("no_refresh_token")
        account = account_of(provider, data["transport"], tokens)
        caller = Caller(data["tenant_id"], data["user_id"], data.get("email"), bool(data.get("is_admin")))
        grant = Grant(
            provider=provider.name,
            account=account,
            refresh_token=tokens.refresh_token,
            connection=new_id(),
            token_url=provider.token_url,
            client_id=provider.client_id,
        )
        info = {
            "provider": provider.name,
            "account": account,
            "status": "connected",
            "connected_at": utc_now(),
            "scopes": list(tokens.scopes or provider.scopes(data["transport"])),
        }
        connection = Connection(
            grant=grant, info=info, settings=profile_fields(provider, data["transport"], account)
        )
        self.settings.save_connection(caller, data["profile"], connection)
        ref = profile_ref(caller, data["profile"])
        prime_access_token(self.settings.secrets.name_for(ref.tenant_id, ref.key), tokens)
        logger.info("oauth account connected", extra={"provider": provider.name, "profile": data["profile"]})

    def _redirect_url(self) -> str:
        if not self.redirect_url:
            raise InvalidInput.on("provider", "OAUTH_REDIRECT_URL is not configured for this stack")
        return self.redirect_url

    def _answer(self, data: dict[str, Any], params: dict[str, str]) -> CallbackAnswer:
        if data.get("return_to"):
            target = data["return_to"]
            return CallbackAnswer(location=target + ("&" if "?" in target else "?") + urlencode(params))
        return CallbackAnswer(html=result_page(data, params))


class _NoAccount(Exception):
    """The provider did not tell us which account signed in (the reason is the message)."""


def account_of(provider: OAuthProvider, transport: Literal["api", "smtp"], tokens: Tokens) -> str:
    """The connected address, from the provider itself (never from the request)."""
    if provider.name == "microsoft" and transport == "api":
        me = _get_json(provider, provider.api_url + "/v1.0/me", tokens.access_token)
        account = me.get("mail") or me.get("userPrincipalName")
    elif provider.name == "microsoft":
        claims = tokens.id_claims()
        account = claims.get("email") or claims.get("preferred_username")
    else:
        info = _get_json(provider, provider.userinfo_url or "", tokens.access_token)
        account = info.get("email") if info.get("email_verified") in (True, "true") else None
    if not account or "@" not in str(account):
        raise _NoAccount("no_verified_address")
    return str(account).lower()


def _get_json(provider: OAuthProvider, url: str, token: str) -> dict[str, Any]:
    try:
        reply = http.request(
            "GET",
            url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=provider.timeout,
            extra_ca_bundle=provider.extra_ca_bundle,
        )
    except http.HttpError as exc:
        raise OAuthFailure("unavailable", exc.kind) from None
    body = reply.json()
    return body if reply.status == 200 and isinstance(body, dict) else {}


def profile_fields(provider: OAuthProvider, transport: str, account: str) -> dict[str, Any]:
    if transport == "api":
        kind = "microsoft_graph" if provider.name == "microsoft" else "gmail_api"
        return {"transport": kind, "provider": provider.preset}
    host, port = provider.smtp
    return {
        "transport": "smtp",
        "provider": provider.preset,
        "host": host,
        "port": port,
        "security": "starttls",
        "username": account,
    }


def result_page(data: dict[str, Any], params: dict[str, str]) -> str:
    label = PROVIDER_LABELS.get(str(data.get("provider")), "the")
    if params.get("oauth") == "connected":
        text = f"The {label} account is connected as the {data['profile']} email account. "
        text += "You can close this window."
    else:
        text = f"The {label} account was not connected ({params.get('reason')}). "
        text += "Start again from the settings page."
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Email account</title></head>'
        f"<body><p>{escape(text)}</p></body></html>"
    )


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
