"""OAuth 2.0 with Microsoft and Google: the providers, their scopes, and the token requests.

oauthlib builds the authorization URL (PKCE S256), the token request bodies and parses the answers
into typed errors; the requests go out over `mailer.delivery.http` (urllib3). oauthlib was chosen
over Authlib and MSAL because it has no HTTP stack or crypto dependency of its own (0.8 MB, no
dependencies; Authlib and MSAL each add about 20 MB with cryptography) and serves both providers.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from oauthlib.oauth2 import WebApplicationClient

from mailer.config import OAuthConfig
from mailer.dal.secret_store import SecretStore
from mailer.delivery import http

ProviderName = Literal["microsoft", "google"]
OAuthTransport = Literal["api", "smtp"]

SCOPES: dict[tuple[str, str], tuple[str, ...]] = {
    # Mail.ReadWrite: messages over Graph's 4 MB request limit go as a draft with upload sessions.
    ("microsoft", "api"): (
        "offline_access",
        "https://graph.microsoft.com/Mail.Send",
        "https://graph.microsoft.com/Mail.ReadWrite",
        "User.Read",
    ),
    # A token for outlook.office.com cannot call Graph /me: the account comes from the ID token.
    ("microsoft", "smtp"): ("offline_access", "https://outlook.office.com/SMTP.Send", "openid", "email"),
    ("google", "api"): ("openid", "email", "https://www.googleapis.com/auth/gmail.send"),
    ("google", "smtp"): ("openid", "email", "https://mail.google.com/"),
}


class OAuthFailure(Exception):
    """A token request failed; `kind` says how (revoked, unavailable, client)."""

    def __init__(self, kind: Literal["revoked", "unavailable", "client"], detail: str) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail


@dataclass(frozen=True)
class Tokens:
    access_token: str = ""
    expires_in: int = 3600
    refresh_token: str | None = None
    scopes: tuple[str, ...] = ()
    id_token: str | None = None

    def __repr__(self) -> str:  # never show a token in a log line or a traceback
        return f"Tokens(expires_in={self.expires_in}, scopes={self.scopes})"

    def id_claims(self) -> dict[str, Any]:
        """The ID token's claims. It came straight from the token endpoint over verified TLS, which
        OpenID Connect Core 3.1.3.7 allows in place of checking its signature."""
        if not self.id_token or self.id_token.count(".") != 2:
            return {}
        payload = self.id_token.split(".")[1]
        try:
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return {}
        return claims if isinstance(claims, dict) else {}


@dataclass(frozen=True)
class OAuthProvider:
    name: ProviderName
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    api_url: str
    smtp: tuple[str, int]
    preset: str  # the provider preset of GET /providers: office365 | gmail
    userinfo_url: str | None = None
    revoke_url: str | None = None
    timeout: float = 10.0
    extra_ca_bundle: str | None = None

    def scopes(self, transport: OAuthTransport) -> tuple[str, ...]:
        return SCOPES[(self.name, transport)]

    def authorization_url(
        self,
        *,
        redirect_uri: str,
        transport: OAuthTransport,
        state: str,
        verifier: str,
        login_hint: str | None,
    ) -> str:
        client = _client(self.client_id)
        extra: dict[str, str] = {"login_hint": login_hint} if login_hint else {}
        if self.name == "google":
            extra |= {"access_type": "offline", "prompt": "consent"}  # so that a refresh token is issued
        https_form, scheme = _as_https(self.authorize_url)
        url = client.prepare_request_uri(
            https_form,
            redirect_uri=redirect_uri,
            scope=list(self.scopes(transport)),
            state=state,
            code_challenge=client.create_code_challenge(verifier, "S256"),
            code_challenge_method="S256",
            **extra,
        )
        return urlunsplit(urlsplit(url)._replace(scheme=scheme))

    def exchange_code(self, code: str, redirect_uri: str, verifier: str) -> Tokens:
        body = _client(self.client_id).prepare_request_body(
            code=code,
            redirect_uri=redirect_uri,
            code_verifier=verifier,
            client_secret=self.client_secret,
            include_client_id=True,
        )
        return self._token_request(body)

    def refresh(self, refresh_token: str) -> Tokens:
        body = _client(self.client_id).prepare_refresh_body(
            refresh_token=refresh_token, client_id=self.client_id, client_secret=self.client_secret
        )
        return self._token_request(body)

    def revoke(self, token: str) -> None:
        """Google only; a failure is ignored (the grant is deleted here either way)."""
        if not self.revoke_url:
            return
        try:
            http.request(
                "POST",
                self.revoke_url,
                body=urlencode({"token": token}).encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
                timeout=self.timeout,
                extra_ca_bundle=self.extra_ca_bundle,
            )
        except http.HttpError:
            return

    def _token_request(self, body: str) -> Tokens:
        try:
            reply = http.request(
                "POST",
                self.token_url,
                body=body.encode(),
                headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
                timeout=self.timeout,
                extra_ca_bundle=self.extra_ca_bundle,
            )
        except http.HttpError as exc:
            raise OAuthFailure("unavailable", f"the token endpoint did not answer ({exc.kind})") from None
        if reply.status >= 500 or reply.status == 429:
            raise OAuthFailure("unavailable", f"the token endpoint answered {reply.status}")
        from oauthlib.oauth2.rfc6749 import errors

        try:
            token = _client(self.client_id).parse_request_body_response(reply.body.decode())
        except errors.InvalidGrantError as exc:
            raise OAuthFailure("revoked", exc.description or "invalid_grant") from None
        except errors.OAuth2Error as exc:
            raise OAuthFailure("client", f"{exc.error}: {exc.description or ''}".strip()) from None
        except (ValueError, UnicodeDecodeError):
            raise OAuthFailure(
                "unavailable", f"the token endpoint answered {reply.status} without JSON"
            ) from None
        scope = token.get("scope") or ()
        return Tokens(
            access_token=str(token["access_token"]),
            expires_in=int(token.get("expires_in") or 3600),
            refresh_token=token.get("refresh_token"),
            scopes=tuple(scope.split() if isinstance(scope, str) else scope),
            id_token=token.get("id_token"),
        )


def _client(client_id: str) -> WebApplicationClient:
    """oauthlib is imported when a token is first needed, not at every function's cold start."""
    from oauthlib.oauth2 import WebApplicationClient

    return WebApplicationClient(client_id)


def _as_https(url: str) -> tuple[str, str]:
    """oauthlib refuses http outright; a loopback http endpoint (checked by require_safe_url) is built as
    https and given its scheme back."""
    http.require_safe_url(url)
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="https")), parts.scheme


def _host_port(value: str, default_port: int = 587) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else (value, default_port)


def provider(
    config: OAuthConfig, name: str, client_secret: str | None, extra_ca_bundle: str | None
) -> OAuthProvider:
    """The provider as this stack is configured for it; ValueError when it is not configured."""
    if name not in ("microsoft", "google"):
        raise ValueError(f"unknown provider {name!r}")
    client_id = getattr(config, f"{name}_client_id")
    if not client_id or not client_secret:
        raise ValueError(f"{name.title()} is not configured: OAUTH_{name.upper()}_CLIENT_ID and its secret")
    google = name == "google"
    return OAuthProvider(
        name="google" if google else "microsoft",
        client_id=client_id,
        client_secret=client_secret,
        authorize_url=getattr(config, f"{name}_authorize_url"),
        token_url=getattr(config, f"{name}_token_url"),
        api_url=(config.gmail_url if google else config.graph_url).rstrip("/"),
        smtp=_host_port(getattr(config, f"{name}_smtp")),
        preset="gmail" if google else "office365",
        userinfo_url=config.google_userinfo_url if google else None,
        revoke_url=config.google_revoke_url if google else None,
        timeout=config.http_timeout_seconds,
        extra_ca_bundle=extra_ca_bundle,
    )


class OAuthProviders:
    """The configured providers; client secrets read once per container, from the environment or
    from the stack's secret (deployed)."""

    def __init__(self, config: OAuthConfig, secrets: SecretStore, extra_ca_bundle: str | None) -> None:
        self.config = config
        self.secrets = secrets
        self.extra_ca_bundle = extra_ca_bundle
        self._client_secrets: dict[str, str] | None = None

    def get(self, name: str) -> OAuthProvider:
        """ValueError when the provider is not configured."""
        return provider(self.config, name, self._client_secret(name), self.extra_ca_bundle)

    def _client_secret(self, name: str) -> str | None:
        from_env = {
            "microsoft": self.config.microsoft_client_secret,
            "google": self.config.google_client_secret,
        }
        if from_env.get(name):
            return from_env[name]
        if not self.config.client_secrets_name:
            return None
        if self._client_secrets is None:
            try:
                loaded = json.loads(self.secrets.get(self.config.client_secrets_name))
            except ValueError:
                loaded = {}
            self._client_secrets = (
                {k: str(v) for k, v in loaded.items() if v} if isinstance(loaded, dict) else {}
            )
        return self._client_secrets.get(name)
