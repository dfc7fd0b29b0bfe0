"""An OAuth 2.0 authorization server on loopback that plays the Microsoft identity platform or Google.

What it imitates, endpoint by endpoint (RFC 6749, RFC 7636 PKCE, RFC 7009 revocation):

Authorization endpoint, `GET /{tenant}/oauth2/v2.0/authorize` (Microsoft v2) and `GET /o/oauth2/v2/auth`
(Google); `/authorize` too. Parameters client_id, redirect_uri, response_type=code, scope, state,
code_challenge, code_challenge_method (S256 or plain), and optionally login_hint, prompt and, for
Google, access_type. As both providers do, an unknown client or a redirect_uri that is not registered
is answered with an error page and never redirected (RFC 6749 §4.1.2.1); every other problem is
redirected as `redirect_uri?error=...&error_description=...&state=...`. The user consents at once:
302 to `redirect_uri?code=...&state=...` (Google adds `scope=`). With `interactive=1` in the query, or
`interactive=True` on the server, a small page offers Approve and Decline instead. `decline_next()`
makes the next request come back with `error=access_denied`, as when the user clicks Cancel.

Token endpoint, `POST /{tenant}/oauth2/v2.0/token` (Microsoft) and `POST /token` (Google), form
encoded. The client authenticates with client_id and client_secret in the body or with HTTP Basic,
never both (RFC 6749 §2.3.1); a client registered without a secret is a public client and must use
PKCE. Grants:

- `authorization_code`: the code is single-use (a second use is refused and, per RFC 6749 §4.1.2,
  revokes what the first one issued), lives `code_lifetime` seconds (both providers: about 10
  minutes), must come from the same client with the same redirect_uri, and the code_verifier must
  match the challenge (RFC 7636 §4.6).
- `refresh_token`: Microsoft answers every refresh with a new refresh token; with
  `rotate_refresh_tokens` (the default for Microsoft) the one just used is refused afterwards. That is
  stricter than Microsoft, which lets an old one work a while longer, so a client that does not store
  the newest refresh token fails here first. Google does not rotate: its refresh answer carries no
  refresh_token and the old one stays valid (`rotate_refresh_tokens=True` makes the Google role
  rotate too). A `scope` on refresh must be within what was consented; the access token is then for
  those scopes only, as a Microsoft refresh token redeemed for another resource is.
- `client_credentials` (Microsoft only; Google answers unsupported_grant_type): scope must be one
  `{resource}/.default`, e.g. `https://graph.microsoft.com/.default`; the app-only token carries the
  application permissions configured in `app_permissions`.

Refresh tokens are issued as the providers issue them: Microsoft only when `offline_access` is among
the scopes, Google only with `access_type=offline`, and Google only on the first consent of a user to
a client unless `prompt=consent` asks again (while an earlier refresh token is still valid).

Success answers carry access_token, token_type "Bearer", expires_in, scope and (when issued)
refresh_token; Microsoft's add ext_expires_in. With the `openid` scope they also carry an OpenID
Connect id_token, RS256-signed with a key published at the jwks_uri (Microsoft
`/{tenant}/discovery/v2.0/keys`, Google `/oauth2/v3/certs`), whose claims follow the scopes:
`email` with the email scope, Microsoft's `preferred_username` and `name` with profile, `nonce`
when the authorization request had one. Microsoft's answer lists Graph scopes with their
resource (`Mail.Send` -> `https://graph.microsoft.com/Mail.Send`) and leaves out offline_access;
Google's spells `email` and `profile` as their userinfo URLs. Errors follow RFC 6749 §5.2: JSON with
`error` and `error_description`, 400, or 401 for invalid_client. Microsoft's also carry error_codes,
timestamp, trace_id, correlation_id and error_uri, and the description starts with an AADSTS code:
the one Microsoft's error reference gives for the case (AADSTS54005 code already redeemed,
AADSTS70008 expired code, AADSTS501481 code_verifier mismatch, AADSTS50173 revoked grant,
AADSTS7000215 invalid client secret, AADSTS700016 unknown application, AADSTS900144 missing
parameter, AADSTS70003 unsupported grant type, AADSTS1002012 client credentials without /.default,
AADSTS65001 no consent), else a generic one (AADSTS70000 for an invalid grant such as a rotated-out
refresh token or another redirect_uri, AADSTS9002313 for a malformed request). Google's descriptions are its
terse ones ("Bad Request", "Token has been expired or revoked.", "Invalid code verifier."), and a
redirect_uri that differs from the authorization request's is `redirect_uri_mismatch`, as Google says.

Revocation, `POST /revoke` (Google, RFC 7009 shape): `token=` in the form (or the query) revokes an
access or refresh token and the grant it came from; 200 with an empty body, or 400
`{"error": "invalid_token"}` for a token that is unknown or already revoked.

Google's OpenID userinfo, `GET /v1/userinfo` (also `/oauth2/v3/userinfo`) with a bearer token:
`{"sub", "email", "email_verified": true}`, the email only when the token has the email scope; 401
with `WWW-Authenticate: Bearer error="invalid_token"` otherwise.

Discovery documents answer at `/.well-known/openid-configuration` (Google) and
`/{tenant}/v2.0/.well-known/openid-configuration` (Microsoft).

Controls for tests: `decline_next()`, `fail_next(status=503)`, `revoke_all(account=None)`,
`expire_access_tokens()`, counters `token_requests` and `refresh_count`, and the logs
`authorize_requests` and `token_calls`. The tokens live in a `TokenRegistry` shared with the resource
servers, whose `validate(token)` tells the account a token acts for.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import json
import re
import secrets
import ssl
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote_plus, urlencode, urlsplit

from local.providers._http import LoopbackHttpServer, Reply, Request, first, form_fields
from local.providers.tokens import AccessToken, Grant, RefreshToken, TokenRegistry, directory_id, unique

Flavor = Literal["microsoft", "google"]

DEFAULT_ACCOUNT = "billing@demo.test"
MICROSOFT_CLIENT_ID = "5f0c7c1e-3d5a-4b8e-9a57-0c0de0000001"
MICROSOFT_CLIENT_SECRET = "local-microsoft-client-secret"
GOOGLE_CLIENT_ID = "000000000001-local.apps.googleusercontent.com"
GOOGLE_CLIENT_SECRET = "GOCSPX-local-google-client-secret"

LOCAL_TENANT_ID = "6f1c2b9a-0d4e-4c11-9a7e-10ca1000c0de"
GRAPH_RESOURCE = "https://graph.microsoft.com"
OUTLOOK_RESOURCE = "https://outlook.office.com"
OUTLOOK365_RESOURCE = "https://outlook.office365.com"
OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
GOOGLE_SCOPE_ALIASES = {
    "email": "https://www.googleapis.com/auth/userinfo.email",
    "profile": "https://www.googleapis.com/auth/userinfo.profile",
}
GOOGLE_EMAIL_SCOPES = ("email", "https://www.googleapis.com/auth/userinfo.email")

# What `{resource}/.default` stands for: the permissions an admin configured for the app.
DEFAULT_DELEGATED_PERMISSIONS: Mapping[str, tuple[str, ...]] = {
    GRAPH_RESOURCE: ("Mail.Send", "Mail.ReadWrite", "User.Read"),
    OUTLOOK_RESOURCE: ("SMTP.Send",),
    OUTLOOK365_RESOURCE: ("SMTP.Send",),
}
DEFAULT_APP_PERMISSIONS: Mapping[str, tuple[str, ...]] = {
    GRAPH_RESOURCE: ("Mail.Send", "Mail.ReadWrite", "User.Read.All"),
    OUTLOOK365_RESOURCE: ("SMTP.SendAsApp",),
    OUTLOOK_RESOURCE: ("SMTP.SendAsApp",),
}

_PKCE_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_MS_AUTHORIZE = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/authorize$")
_MS_TOKEN = re.compile(r"^/(?P<tenant>[^/]+)/oauth2/v2\.0/token$")
_MS_KEYS = re.compile(r"^/(?P<tenant>[^/]+)/discovery/v2\.0/keys$")
_MS_DISCOVERY = re.compile(r"^/(?P<tenant>[^/]+)/v2\.0/\.well-known/openid-configuration$")
_NO_STORE = [("Cache-Control", "no-store"), ("Pragma", "no-cache")]


@dataclass(frozen=True)
class OAuthClient:
    """An app registration. No secret: a public client. No redirect URIs: any http(s) URL is accepted."""

    client_id: str
    client_secret: str | None = None
    redirect_uris: tuple[str, ...] = ()


@dataclass(frozen=True)
class TokenCall:
    grant_type: str
    status: int
    error: str | None = None
    client_id: str | None = None


@dataclass
class _Code:
    code: str
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    account: str
    challenge: str | None
    method: str
    expires_at: float
    issue_refresh: bool
    nonce: str | None = None
    used: bool = False
    grant_id: str | None = None


@dataclass(frozen=True)
class _Problem:
    """One token endpoint error: its RFC 6749 code, and how each provider words it."""

    status: int
    error: str
    aadsts: int
    microsoft: str
    google: str
    google_error: str | None = None


_PROBLEMS: dict[str, _Problem] = {
    "missing": _Problem(
        400,
        "invalid_request",
        900144,
        "The request body must contain the following parameter: '{param}'.",
        "Missing required parameter: {param}",
    ),
    "duplicate": _Problem(
        400,
        "invalid_request",
        900143,
        "The request body must contain the parameter '{param}' only once.",
        "Duplicate parameter: {param}",
    ),
    "content_type": _Problem(
        400,
        "invalid_request",
        900144,
        "The request body must be application/x-www-form-urlencoded.",
        "Invalid request: the body must be application/x-www-form-urlencoded.",
    ),
    "two_methods": _Problem(
        400,
        "invalid_request",
        9002313,
        "Invalid request. The client authenticated with more than one method.",
        "Invalid request: more than one client authentication method.",
    ),
    "unknown_client": _Problem(
        401,
        "invalid_client",
        700016,
        "Application with identifier '{client_id}' was not found in the directory 'local'.",
        "The OAuth client was not found.",
    ),
    "bad_secret": _Problem(
        401,
        "invalid_client",
        7000215,
        "Invalid client secret provided. Ensure the secret being sent in the request is the client "
        "secret value, not the client secret ID, for a secret added to app '{client_id}'.",
        "Unauthorized",
    ),
    "missing_secret": _Problem(
        401,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        "client_secret is missing.",
    ),
    "unknown_code": _Problem(
        400,
        "invalid_grant",
        9002313,
        "Invalid request. Request is malformed or invalid.",
        "Malformed auth code.",
    ),
    "code_used": _Problem(
        400,
        "invalid_grant",
        54005,
        "OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an "
        "existing refresh token.",
        "Bad Request",
    ),
    "code_expired": _Problem(
        400,
        "invalid_grant",
        70008,
        "The provided authorization code or refresh token has expired due to inactivity. Send a new "
        "interactive authorization request for this user and resource.",
        "Bad Request",
    ),
    "code_client": _Problem(
        400,
        "invalid_grant",
        70000,
        "The provided authorization code was issued to a different client.",
        "Bad Request",
        "unauthorized_client",
    ),
    "redirect": _Problem(
        400,
        "invalid_grant",
        70000,
        "The provided value for the 'redirect_uri' is not valid. The value must exactly match the "
        "redirect URI used to obtain the authorization code.",
        "Bad Request",
        "redirect_uri_mismatch",
    ),
    "verifier_missing": _Problem(
        400,
        "invalid_grant",
        50148,
        "The code_verifier does not match the code_challenge supplied in the authorization request for PKCE.",
        "Missing code verifier.",
    ),
    "verifier": _Problem(
        400,
        "invalid_grant",
        501481,
        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
        "Invalid code verifier.",
    ),
    "unknown_refresh": _Problem(
        400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.", "Bad Request"
    ),
    "refresh_revoked": _Problem(
        400,
        "invalid_grant",
        50173,
        "The provided grant has expired due to it being revoked, a fresh auth token is needed. The user "
        "might have changed or reset their password.",
        "Token has been expired or revoked.",
    ),
    "refresh_superseded": _Problem(
        400,
        "invalid_grant",
        70000,
        "The provided grant is no longer valid: this refresh token was replaced by the one a later "
        "refresh returned.",
        "Token has been expired or revoked.",
    ),
    "refresh_expired": _Problem(
        400,
        "invalid_grant",
        700082,
        "The refresh token has expired due to inactivity. The token was issued on {issued} and was "
        "inactive for too long.",
        "Token has been expired or revoked.",
    ),
    "refresh_client": _Problem(
        400,
        "invalid_grant",
        70000,
        "The refresh token was issued to a different client.",
        "Unauthorized",
        "unauthorized_client",
    ),
    "scope_not_granted": _Problem(
        400,
        "invalid_grant",
        65001,
        "The user or administrator has not consented to use the application with ID '{client_id}'. "
        "Send an interactive authorization request for this user and resource.",
        "Some requested scopes were not granted: {scope}",
        "invalid_scope",
    ),
    "unsupported_grant": _Problem(
        400,
        "unsupported_grant_type",
        70003,
        "The app requested an unsupported grant type '{grant_type}'.",
        "Invalid grant_type: {grant_type}",
    ),
    "cc_scope": _Problem(
        400,
        "invalid_scope",
        1002012,
        "The provided value for scope {scope} is not valid. Client credential flows must have a scope "
        "value with /.default suffixed to the resource identifier (application ID URI).",
        "Invalid scope",
    ),
    "cc_resource": _Problem(
        400,
        "invalid_resource",
        500011,
        "The resource principal named {resource} was not found in the tenant named local.",
        "Invalid resource",
    ),
    "unavailable": _Problem(
        503,
        "temporarily_unavailable",
        90033,
        "A transient error has occurred. Please try again.",
        "Service unavailable, try again later.",
    ),
}


def s256(verifier: str) -> str:
    """The S256 code challenge of a verifier (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def microsoft_scopes(raw: str | Iterable[str]) -> tuple[str, ...]:
    """Scopes as Microsoft reads them: a bare permission name is one of Microsoft Graph."""
    names = raw.split() if isinstance(raw, str) else list(raw)
    normalized = []
    for name in names:
        if name.lower() in OIDC_SCOPES or "://" in name or name.startswith("api:"):
            normalized.append(name.lower() if name.lower() in OIDC_SCOPES else name)
        else:
            normalized.append(f"{GRAPH_RESOURCE}/{name}")
    return unique(normalized)


def google_scopes(raw: str | Iterable[str]) -> tuple[str, ...]:
    names = raw.split() if isinstance(raw, str) else list(raw)
    return unique(GOOGLE_SCOPE_ALIASES.get(name.lower(), name) for name in names)


def _resource_of(scope: str) -> str | None:
    if "://" not in scope:
        return None
    parts = urlsplit(scope)
    return f"{parts.scheme}://{parts.netloc}"


class OAuthServer(LoopbackHttpServer):
    """The authorization server of one provider; see the module docstring for what it does."""

    def __init__(
        self,
        registry: TokenRegistry | None = None,
        *,
        flavor: Flavor = "microsoft",
        clients: Iterable[OAuthClient] | None = None,
        account: str = DEFAULT_ACCOUNT,
        tenant: str = "common",
        expires_in: int = 3600,
        code_lifetime: float = 600.0,
        refresh_token_lifetime: float | None = None,
        rotate_refresh_tokens: bool | None = None,
        require_pkce: bool = True,
        honor_login_hint: bool = False,
        interactive: bool = False,
        delegated_permissions: Mapping[str, Iterable[str]] | None = None,
        app_permissions: Mapping[str, Iterable[str]] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, port=port, ssl_context=ssl_context)
        if flavor not in ("microsoft", "google"):
            raise ValueError(f"flavor is microsoft or google, not {flavor!r}")
        self.name = f"oauth-{flavor}"
        self.flavor: Flavor = flavor
        self.registry = registry if registry is not None else TokenRegistry()
        if clients is None:
            clients = [
                OAuthClient(MICROSOFT_CLIENT_ID, MICROSOFT_CLIENT_SECRET)
                if flavor == "microsoft"
                else OAuthClient(GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET)
            ]
        self.clients: dict[str, OAuthClient] = {c.client_id: c for c in clients}
        self.account = account
        self.tenant = tenant
        self.expires_in = expires_in
        self.code_lifetime = code_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self.rotate_refresh_tokens = (
            flavor == "microsoft" if rotate_refresh_tokens is None else rotate_refresh_tokens
        )
        self.require_pkce = require_pkce
        self.honor_login_hint = honor_login_hint
        self.interactive = interactive
        self.delegated_permissions = {
            k: tuple(v) for k, v in (delegated_permissions or DEFAULT_DELEGATED_PERMISSIONS).items()
        }
        self.app_permissions = {k: tuple(v) for k, v in (app_permissions or DEFAULT_APP_PERMISSIONS).items()}
        self.token_requests = 0
        self.refresh_count = 0
        self.authorize_requests: list[dict[str, str]] = []
        self.token_calls: list[TokenCall] = []
        self._codes: dict[str, _Code] = {}
        self._declines = 0
        self._failures: list[tuple[int, int | None]] = []
        self._state_lock = threading.Lock()
        self._signer = _Signer()

    # --- URLs --------------------------------------------------------------------------------------

    @property
    def authorize_url(self) -> str:
        if self.flavor == "microsoft":
            return f"{self.url}/{self.tenant}/oauth2/v2.0/authorize"
        return f"{self.url}/o/oauth2/v2/auth"

    @property
    def token_url(self) -> str:
        if self.flavor == "microsoft":
            return f"{self.url}/{self.tenant}/oauth2/v2.0/token"
        return f"{self.url}/token"

    @property
    def revoke_url(self) -> str:
        return f"{self.url}/revoke"

    @property
    def userinfo_url(self) -> str:
        return f"{self.url}/v1/userinfo"

    # --- controls ----------------------------------------------------------------------------------

    def decline_next(self, times: int = 1) -> None:
        """The next `times` authorization requests come back with error=access_denied."""
        with self._state_lock:
            self._declines += times

    def fail_next(self, status: int = 503, *, times: int = 1, retry_after: int | None = None) -> None:
        """The next `times` token requests answer `status` (temporarily_unavailable for 5xx)."""
        with self._state_lock:
            self._failures.extend([(status, retry_after)] * times)

    def revoke_all(self, account: str | None = None, *, access_tokens: bool = True) -> int:
        """Revoke this provider's refresh tokens (of `account`): refreshing answers invalid_grant after."""
        return self.registry.revoke_all(account, issuer=self.flavor, access_tokens=access_tokens)

    def expire_access_tokens(self, account: str | None = None) -> int:
        return self.registry.expire_access_tokens(account, issuer=self.flavor)

    def validate(self, token: str | None) -> str | None:
        found = self.registry.lookup(token)
        return found.account if found is not None and found.issuer == self.flavor else None

    def add_client(self, client: OAuthClient) -> None:
        self.clients[client.client_id] = client

    # --- routing -----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        path = request.path.rstrip("/") or "/"
        if request.method == "GET" and (
            _MS_AUTHORIZE.match(path) or path in ("/o/oauth2/v2/auth", "/o/oauth2/auth", "/authorize")
        ):
            return self._authorize(request)
        if _MS_TOKEN.match(path) or path in ("/token", "/o/oauth2/token", "/oauth2/v4/token"):
            if request.method != "POST":
                return Reply.json(405, {"error": "invalid_request", "error_description": "POST only"})
            return self._token(request)
        if path in ("/revoke", "/o/oauth2/revoke") and request.method in ("POST", "GET"):
            return self._revoke(request)
        if path in ("/v1/userinfo", "/oauth2/v3/userinfo") and request.method in ("GET", "POST"):
            return self._userinfo(request)
        if path == "/oauth2/v3/certs" or _MS_KEYS.match(path):
            return Reply.json(200, self._signer.jwks())
        if path == "/.well-known/openid-configuration" or _MS_DISCOVERY.match(path):
            return Reply.json(200, self._discovery())
        if path == "/local/revoke-all" and request.method == "POST":
            # The local stand-in for removing the app in the account's security settings
            # (myaccount.google.com/permissions, or My Apps at Microsoft): every grant stops working.
            return Reply.json(200, {"revoked": self.revoke_all()})
        if path == "/error":
            code = html.escape(request.arg("code") or "")
            return Reply.html(200, f"<!doctype html><title>Error {code}</title><p>Error code {code}.</p>")
        return Reply.json(404, {"error": "not_found", "error_description": f"No endpoint at {request.path}"})

    # --- authorization endpoint --------------------------------------------------------------------

    def _authorize(self, request: Request) -> Reply:
        params = {name: values[0] for name, values in request.query.items() if values}
        with self._state_lock:
            self.authorize_requests.append(dict(params))
        client = self.clients.get(params.get("client_id", ""))
        if client is None:
            return self._error_page(
                "invalid_client",
                f"AADSTS700016: Application with identifier '{params.get('client_id', '')}' was not found."
                if self.flavor == "microsoft"
                else "Error 401: invalid_client. The OAuth client was not found.",
                status=401 if self.flavor == "google" else 400,
            )
        redirect_uri = params.get("redirect_uri", "")
        if not self._redirect_allowed(client, redirect_uri):
            return self._error_page(
                "redirect_uri_mismatch",
                f"AADSTS50011: The redirect URI '{redirect_uri}' specified in the request does not match "
                "the redirect URIs configured for the application."
                if self.flavor == "microsoft"
                else f"Error 400: redirect_uri_mismatch. You can't sign in because this app sent an invalid "
                f"request. redirect_uri={redirect_uri}",
            )
        state = params.get("state")

        def bounce(error: str, description: str) -> Reply:
            return Reply.redirect(
                _with_query(redirect_uri, error=error, error_description=description, state=state)
            )

        if params.get("response_type") != "code":
            return bounce(
                "unsupported_response_type",
                f"The response_type '{params.get('response_type', '')}' is not supported.",
            )
        raw_scope = params.get("scope", "").strip()
        if not raw_scope:
            return bounce("invalid_request", "The request must contain the parameter 'scope'.")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method", "plain" if challenge else "")
        if challenge:
            if method not in ("S256", "plain"):
                return bounce("invalid_request", f"Invalid code_challenge_method '{method}'.")
            if not _PKCE_VERIFIER.match(challenge):
                return bounce("invalid_request", "Invalid code_challenge.")
        elif self.require_pkce or client.client_secret is None:
            return bounce("invalid_request", "Proof Key for Code Exchange is required: send code_challenge.")
        if self.interactive or params.get("interactive") == "1":
            decision = params.get("decision")
            if decision is None:
                return self._consent_page(request, params)
            if decision != "approve":
                return bounce("access_denied", self._declined_text())
        with self._state_lock:
            declined = self._declines > 0
            if declined:
                self._declines -= 1
        if declined:
            return bounce("access_denied", self._declined_text())

        account = (
            params.get("login_hint") if self.honor_login_hint and params.get("login_hint") else self.account
        )
        scopes, offline = self._requested_scopes(raw_scope, params)
        issue_refresh = offline
        if self.flavor == "google" and offline and "consent" not in params.get("prompt", "").split():
            # Google returns a refresh token on a user's first consent to a client; a later
            # authorization gets one again only with prompt=consent.
            held = self.registry.has_live_refresh_token(
                issuer="google", client_id=client.client_id, account=account
            )
            issue_refresh = not held
        code = self._new_code_value()
        with self._state_lock:
            self._codes[code] = _Code(
                code=code,
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                scopes=scopes,
                account=account,
                challenge=challenge,
                method=method,
                nonce=params.get("nonce"),
                expires_at=self.registry.clock() + self.code_lifetime,
                issue_refresh=issue_refresh,
            )
        extra: dict[str, str | None] = {"code": code, "state": state}
        if self.flavor == "google":
            extra["scope"] = " ".join(scopes)
        else:
            extra["session_state"] = str(uuid.uuid4())
        return Reply.redirect(_with_query(redirect_uri, **extra))

    def _requested_scopes(self, raw: str, params: Mapping[str, str]) -> tuple[tuple[str, ...], bool]:
        if self.flavor == "google":
            return google_scopes(raw), params.get("access_type") == "offline"
        scopes = microsoft_scopes(raw)
        offline = any(s == "offline_access" for s in scopes)
        expanded: list[str] = []
        for scope in scopes:
            if scope == "offline_access":
                continue
            resource = _resource_of(scope)
            if resource and scope.endswith("/.default"):
                expanded.extend(f"{resource}/{p}" for p in self.delegated_permissions.get(resource, ()))
            else:
                expanded.append(scope)
        return unique(expanded), offline

    def _redirect_allowed(self, client: OAuthClient, redirect_uri: str) -> bool:
        if not redirect_uri:
            return False
        parts = urlsplit(redirect_uri)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
            return False
        return not client.redirect_uris or redirect_uri in client.redirect_uris

    def _declined_text(self) -> str:
        if self.flavor == "microsoft":
            return "AADSTS65004: User declined to consent to access the app."
        return "The user denied access."

    def _consent_page(self, request: Request, params: Mapping[str, str]) -> Reply:
        base = {k: v for k, v in params.items() if k not in ("interactive", "decision")}
        base["interactive"] = "1"
        approve = html.escape(f"{request.path}?{urlencode({**base, 'decision': 'approve'})}")
        decline = html.escape(f"{request.path}?{urlencode({**base, 'decision': 'decline'})}")
        who = html.escape(
            params.get("login_hint") if self.honor_login_hint and params.get("login_hint") else self.account
        )
        scopes = html.escape(params.get("scope", ""))
        provider = "Microsoft" if self.flavor == "microsoft" else "Google"
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Sign in (local)</title></head><body>"
            f"<h1>{provider} (local)</h1><p>Signed in as <b>{who}</b>.</p>"
            f"<p>The app asks for: <code>{scopes}</code></p>"
            f"<p><a id='approve' href='{approve}'>Approve</a> &nbsp; "
            f"<a id='decline' href='{decline}'>Decline</a></p>"
            "</body></html>"
        )
        return Reply.html(200, page, [("Cache-Control", "no-store")])

    def _error_page(self, error: str, text: str, status: int = 400) -> Reply:
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Sign-in error</title></head><body>"
            f"<h1>{html.escape(error)}</h1><p>{html.escape(text)}</p></body></html>"
        )
        return Reply.html(status, page)

    def _new_code_value(self) -> str:
        if self.flavor == "google":
            return "4/0A" + secrets.token_urlsafe(48)
        return "1.A" + secrets.token_urlsafe(96)

    # --- token endpoint ----------------------------------------------------------------------------

    def _token(self, request: Request) -> Reply:
        with self._state_lock:
            self.token_requests += 1
            failure = self._failures.pop(0) if self._failures else None
        fields = (
            form_fields(request.body) if request.content_type == "application/x-www-form-urlencoded" else {}
        )
        grant_type = first(fields, "grant_type") or ""
        if grant_type == "refresh_token":
            with self._state_lock:
                self.refresh_count += 1
        if failure is not None:
            status, retry_after = failure
            headers = [("Retry-After", str(retry_after))] if retry_after is not None else []
            problem = _PROBLEMS["unavailable"]
            reply = self._problem(
                _Problem(status, problem.error, problem.aadsts, problem.microsoft, problem.google)
            )
            reply = Reply(reply.status, reply.body, [*reply.headers, *headers])
            return self._logged(grant_type, reply, None)
        if request.content_type != "application/x-www-form-urlencoded":
            return self._logged(grant_type, self._problem(_PROBLEMS["content_type"]), None)
        for name, values in fields.items():
            if len(values) > 1:
                return self._logged(grant_type, self._problem(_PROBLEMS["duplicate"], param=name), None)

        client, failure_reply = self._authenticate_client(request, fields)
        if failure_reply is not None:
            return self._logged(grant_type, failure_reply, first(fields, "client_id"))
        assert client is not None
        if not grant_type:
            reply = self._problem(_PROBLEMS["missing"], param="grant_type")
        elif grant_type == "authorization_code":
            reply = self._grant_code(client, fields)
        elif grant_type == "refresh_token":
            reply = self._grant_refresh(client, fields)
        elif grant_type == "client_credentials" and self.flavor == "microsoft":
            reply = self._grant_client_credentials(client, fields)
        else:
            reply = self._problem(_PROBLEMS["unsupported_grant"], grant_type=grant_type)
        return self._logged(grant_type, reply, client.client_id)

    def _logged(self, grant_type: str, reply: Reply, client_id: str | None) -> Reply:
        error = None
        if reply.status >= 400:
            try:
                error = json.loads(reply.body).get("error")
            except ValueError:
                error = None
        with self._state_lock:
            self.token_calls.append(TokenCall(grant_type, reply.status, error, client_id))
        return reply

    def _authenticate_client(
        self, request: Request, fields: Mapping[str, list[str]]
    ) -> tuple[OAuthClient | None, Reply | None]:
        basic = request.header("Authorization").strip()
        body_id, body_secret = first(fields, "client_id"), first(fields, "client_secret")
        used_basic = basic.lower().startswith("basic ")
        if used_basic:
            try:
                decoded = base64.b64decode(basic[6:].strip(), validate=True).decode("utf-8")
                raw_id, _, raw_secret = decoded.partition(":")
            except (ValueError, UnicodeDecodeError):
                return None, self._problem(_PROBLEMS["unknown_client"], basic=True, client_id="")
            # RFC 6749 §2.3.1 form-encodes both before Basic; many clients do not, so take either.
            client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
            if client_id not in self.clients and raw_id in self.clients:
                client_id = raw_id
            if (client := self.clients.get(client_id)) is not None and client.client_secret == raw_secret:
                secret = raw_secret
            if body_secret is not None or (body_id is not None and body_id != client_id):
                return None, self._problem(_PROBLEMS["two_methods"])
        else:
            client_id, secret = body_id or "", body_secret
        if not client_id:
            return None, self._problem(_PROBLEMS["missing"], param="client_id")
        client = self.clients.get(client_id)
        if client is None:
            return None, self._problem(_PROBLEMS["unknown_client"], basic=used_basic, client_id=client_id)
        if client.client_secret is not None:
            if not secret:
                return None, self._problem(_PROBLEMS["missing_secret"], basic=used_basic)
            if not secrets.compare_digest(secret.encode(), client.client_secret.encode()):
                return None, self._problem(_PROBLEMS["bad_secret"], basic=used_basic, client_id=client_id)
        return client, None

    def _grant_code(self, client: OAuthClient, fields: Mapping[str, list[str]]) -> Reply:
        code_value = first(fields, "code")
        if not code_value:
            return self._problem(_PROBLEMS["missing"], param="code")
        redirect_uri = first(fields, "redirect_uri")
        if not redirect_uri:
            return self._problem(_PROBLEMS["missing"], param="redirect_uri")
        verifier = first(fields, "code_verifier")
        now = self.registry.clock()
        with self._state_lock:
            code = self._codes.get(code_value)
            if code is None:
                return self._problem(_PROBLEMS["unknown_code"])
            if code.client_id != client.client_id:
                return self._problem(_PROBLEMS["code_client"])
            if code.used:
                # RFC 6749 §4.1.2: a code used twice revokes what it was exchanged for.
                if code.grant_id:
                    self.registry.revoke_grant(code.grant_id)
                return self._problem(_PROBLEMS["code_used"])
            if code.expires_at <= now:
                return self._problem(_PROBLEMS["code_expired"])
            if redirect_uri != code.redirect_uri:
                return self._problem(_PROBLEMS["redirect"])
            if code.challenge:
                if not verifier:
                    return self._problem(_PROBLEMS["verifier_missing"])
                expected = s256(verifier) if code.method == "S256" else verifier
                if not _PKCE_VERIFIER.match(verifier) or not secrets.compare_digest(expected, code.challenge):
                    return self._problem(_PROBLEMS["verifier"])
            code.used = True
            grant = self.registry.new_grant(
                issuer=self.flavor,
                client_id=client.client_id,
                account=code.account,
                scopes=code.scopes,
                offline=code.issue_refresh,
            )
            code.grant_id = grant.grant_id
        return self._token_reply(grant, grant.scopes, issue_refresh=code.issue_refresh, nonce=code.nonce)

    def _grant_refresh(self, client: OAuthClient, fields: Mapping[str, list[str]]) -> Reply:
        value = first(fields, "refresh_token")
        if not value:
            return self._problem(_PROBLEMS["missing"], param="refresh_token")
        stored = self.registry.refresh_token(value)
        if stored is None or stored.issuer != self.flavor:
            return self._problem(_PROBLEMS["unknown_refresh"])
        if stored.client_id != client.client_id:
            return self._problem(_PROBLEMS["refresh_client"])
        if stored.revoked:
            return self._problem(_PROBLEMS["refresh_revoked"])
        if stored.superseded:
            return self._problem(_PROBLEMS["refresh_superseded"])
        if stored.expires_at is not None and stored.expires_at <= self.registry.clock():
            issued = datetime.fromtimestamp(stored.issued_at, UTC).isoformat()
            return self._problem(_PROBLEMS["refresh_expired"], issued=issued)
        grant = self.registry.grant(stored.grant_id)
        assert grant is not None
        scopes = grant.scopes
        requested = first(fields, "scope")
        if requested:
            asked, _ = self._requested_scopes(requested, {"access_type": "offline"})
            granted = {s.lower() for s in grant.scopes}
            missing = [s for s in asked if s.lower() not in granted and s.lower() not in OIDC_SCOPES]
            if missing:
                return self._problem(
                    _PROBLEMS["scope_not_granted"], client_id=client.client_id, scope=" ".join(missing)
                )
            scopes = asked
        # Microsoft answers every refresh with a new refresh token; Google keeps the one it gave.
        self.registry.mark_refresh_used(value, supersede=self.rotate_refresh_tokens)
        renew = self.flavor == "microsoft" or self.rotate_refresh_tokens
        return self._token_reply(grant, scopes, issue_refresh=renew)

    def _grant_client_credentials(self, client: OAuthClient, fields: Mapping[str, list[str]]) -> Reply:
        if client.client_secret is None:
            return self._problem(_PROBLEMS["missing_secret"])
        scope = first(fields, "scope")
        if not scope:
            return self._problem(_PROBLEMS["missing"], param="scope")
        names = scope.split()
        if len(names) != 1 or not names[0].endswith("/.default") or _resource_of(names[0]) is None:
            return self._problem(_PROBLEMS["cc_scope"], scope=scope)
        resource = _resource_of(names[0])
        assert resource is not None
        permissions = self.app_permissions.get(resource)
        if permissions is None:
            return self._problem(_PROBLEMS["cc_resource"], resource=resource)
        grant = self.registry.new_grant(
            issuer=self.flavor,
            client_id=client.client_id,
            account=None,
            scopes=[f"{resource}/{p}" for p in permissions],
        )
        return self._token_reply(grant, grant.scopes, issue_refresh=False)

    def _token_reply(
        self, grant: Grant, scopes: tuple[str, ...], *, issue_refresh: bool, nonce: str | None = None
    ) -> Reply:
        access = self.registry.issue_access_token(
            grant, lifetime=self.expires_in, scopes=scopes, prefix="ya29." if self.flavor == "google" else ""
        )
        refresh: RefreshToken | None = None
        if issue_refresh:
            refresh = self.registry.issue_refresh_token(
                grant,
                lifetime=self.refresh_token_lifetime,
                prefix="1//0" if self.flavor == "google" else "0.A",
            )
        body = self._token_body(access, refresh)
        if grant.account is not None and any(s.lower() == "openid" for s in scopes):
            body["id_token"] = self._id_token(grant, scopes, nonce)
        return Reply.json(200, body, _NO_STORE)

    def _id_token(self, grant: Grant, scopes: tuple[str, ...], nonce: str | None) -> str:
        """An OpenID Connect ID token (RS256, key at the jwks_uri) with the claims the scopes allow."""
        assert grant.account is not None
        held = {s.lower() for s in scopes}
        now = int(self.registry.clock())
        claims: dict[str, object] = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "sub": _subject(grant.account),
            "iat": now,
            "exp": now + 3600,
        }
        if self.flavor == "microsoft":
            claims.update(ver="2.0", nbf=now, tid=LOCAL_TENANT_ID, oid=directory_id(grant.account))
            if "profile" in held:
                claims.update(preferred_username=grant.account, name=_display_name(grant.account))
            if "email" in held:
                claims["email"] = grant.account
        else:
            claims["azp"] = grant.client_id
            if held & {"email", GOOGLE_SCOPE_ALIASES["email"]}:
                claims.update(email=grant.account, email_verified=True)
            if held & {"profile", GOOGLE_SCOPE_ALIASES["profile"]}:
                claims["name"] = _display_name(grant.account)
        if nonce:
            claims["nonce"] = nonce
        return self._signer.sign(claims)

    @property
    def issuer(self) -> str:
        if self.flavor == "microsoft":
            return f"{self.url}/{LOCAL_TENANT_ID}/v2.0"
        return self.url

    @property
    def jwks_url(self) -> str:
        if self.flavor == "microsoft":
            return f"{self.url}/{self.tenant}/discovery/v2.0/keys"
        return f"{self.url}/oauth2/v3/certs"

    def _token_body(self, access: AccessToken, refresh: RefreshToken | None) -> dict[str, object]:
        body: dict[str, object] = {
            "token_type": "Bearer",
            "scope": " ".join(access.scopes),
            "expires_in": self.expires_in,
            "access_token": access.token,
        }
        if self.flavor == "microsoft":
            body["ext_expires_in"] = self.expires_in
        if refresh is not None:
            body["refresh_token"] = refresh.token
        return body

    def _problem(self, problem: _Problem, *, basic: bool = False, **values: str) -> Reply:
        headers = list(_NO_STORE)
        if problem.status == 401 and basic:
            headers.append(("WWW-Authenticate", 'Basic realm="local"'))
        if self.flavor == "google":
            body: dict[str, object] = {
                "error": problem.google_error or problem.error,
                "error_description": problem.google.format(**_defaults(values)),
            }
            return Reply.json(problem.status, body, headers)
        now = datetime.now(UTC)
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        text = problem.microsoft.format(**_defaults(values))
        description = (
            f"AADSTS{problem.aadsts}: {text}\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}"
            f"\r\nTimestamp: {stamp}"
        )
        body = {
            "error": problem.error,
            "error_description": description,
            "error_codes": [problem.aadsts],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"{self.url}/error?code={problem.aadsts}",
        }
        return Reply.json(problem.status, body, headers)

    # --- revocation and userinfo -------------------------------------------------------------------

    def _revoke(self, request: Request) -> Reply:
        fields = (
            form_fields(request.body) if request.content_type == "application/x-www-form-urlencoded" else {}
        )
        token = first(fields, "token") or request.arg("token")
        if not token:
            return Reply.json(
                400, {"error": "invalid_request", "error_description": "Missing required parameter: token"}
            )
        if not self.registry.revoke_token(token):
            return Reply.json(
                400, {"error": "invalid_token", "error_description": "Token expired or revoked"}
            )
        return Reply(200, b"", [("Content-Type", "application/json; charset=utf-8")])

    def _userinfo(self, request: Request) -> Reply:
        token = self.registry.lookup(request.bearer())
        if token is None or token.issuer != self.flavor or token.account is None:
            return Reply.json(
                401,
                {"error": "invalid_request", "error_description": "Invalid Credentials"},
                [("WWW-Authenticate", 'Bearer realm="local", error="invalid_token"')],
            )
        body: dict[str, object] = {"sub": _subject(token.account)}
        if self.flavor == "microsoft" or token.has_any_scope(GOOGLE_EMAIL_SCOPES):
            body["email"] = token.account
            body["email_verified"] = True
        return Reply.json(200, body)

    def _discovery(self) -> dict[str, object]:
        document: dict[str, object] = {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_url,
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public" if self.flavor == "google" else "pairwise"],
            "authorization_endpoint": self.authorize_url,
            "token_endpoint": self.token_url,
            "userinfo_endpoint": self.userinfo_url,
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"]
            + (["client_credentials"] if self.flavor == "microsoft" else []),
            "code_challenge_methods_supported": ["plain", "S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        }
        if self.flavor == "google":
            document["revocation_endpoint"] = self.revoke_url
        return document


def _subject(account: str) -> str:
    """A stable subject identifier for an account (Google's are 21 digits)."""
    digest = hashlib.sha256(account.lower().encode()).hexdigest()
    return str(int(digest[:18], 16)).rjust(21, "1")[:21]


def _defaults(values: Mapping[str, str]) -> dict[str, str]:
    return {
        "param": "",
        "client_id": "",
        "grant_type": "",
        "scope": "",
        "resource": "",
        "issued": "",
        **values,
    }


def _with_query(url: str, **params: str | None) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    parts = urlsplit(url)
    joiner = "&" if parts.query else "?"
    return f"{url}{joiner}{query}"


def _display_name(account: str) -> str:
    return account.split("@", 1)[0].replace(".", " ").title()


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@functools.cache
def _signing_key() -> Any:
    """One RSA key per process for every local authorization server, made on first use (it is slow)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def _signing_key_id() -> str:
    return secrets.token_hex(8)


class _Signer:
    """Signs RS256 ID tokens and answers the JWKS document with the public key."""

    def __init__(self) -> None:
        self.kid = _signing_key_id()

    def _private_key(self) -> Any:
        return _signing_key()

    def sign(self, claims: Mapping[str, object]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"alg": "RS256", "kid": self.kid, "typ": "JWT"}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = self._private_key().sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return f"{signing_input}.{_b64url(signature)}"

    def jwks(self) -> dict[str, object]:
        numbers = self._private_key().public_key().public_numbers()

        def as_bytes(value: int) -> bytes:
            return value.to_bytes((value.bit_length() + 7) // 8, "big")

        key = {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid}
        key.update(n=_b64url(as_bytes(numbers.n)), e=_b64url(as_bytes(numbers.e)))
        return {"keys": [key]}
