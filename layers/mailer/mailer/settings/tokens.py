"""Access tokens for OAuth profiles: cached per container, refreshed when expired or refused, and a
rotated refresh token stored at once, with a version so two containers never lose the newer one.

The refresh token lives in the profile's secret as a *grant* (JSON). Each rotation writes version
n+1 under a ClientRequestToken derived from (secret, connection, n+1): if two containers rotate at
once, Secrets Manager takes one and refuses the other, and the loser keeps the winner's token.
A refresh answered `invalid_grant` is retried once with the stored grant read again (another
container may have rotated it meanwhile); only when that fails too is the account disconnected.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

from mailer.dal.secret_store import SecretStore
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.observability import logger
from mailer.settings.oauth import OAuthFailure, OAuthProvider, Tokens

EXPIRY_MARGIN_SECONDS = 60
_ACCESS: dict[str, tuple[str, float]] = {}  # this container's access tokens, by secret name
PROVIDER_LABELS = {"microsoft": "Microsoft 365", "google": "Google"}


@dataclass(frozen=True)
class Grant:
    """What the profile's secret holds for an OAuth connection."""

    provider: str
    account: str
    refresh_token: str
    connection: str  # a new id at each connect, so versions of an old connection never collide
    version: int = 1
    token_url: str = ""
    client_id: str = ""
    kind: str = "oauth"

    def __repr__(self) -> str:
        return f"Grant(provider={self.provider!r}, account={self.account!r}, version={self.version})"

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, text: str) -> Grant | None:
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("kind") != "oauth" or not data.get("refresh_token"):
            return None
        fields = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in fields})

    def version_token(self, secret_name: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{secret_name}#{self.connection}#{self.version}"))


def reconnect_failure(provider: str, detail: str | None) -> Failure:
    label = PROVIDER_LABELS.get(provider, provider)
    return Failure(
        stage="auth",
        category="oauth_reconnect_required",
        transient=False,
        server_message=(detail or "")[:512] or None,
        hint=f"The {label} connection was revoked or has expired (a password change, removed consent, "
        f"or months unused). Connect the account again: POST /oauth/{provider}/start.",
    )


def unavailable_failure(provider: str, detail: str) -> Failure:
    label = PROVIDER_LABELS.get(provider, provider)
    return Failure(
        stage="auth",
        category="oauth_unavailable",
        transient=True,
        server_message=detail[:512],
        hint=f"{label} sign-in could not be reached to renew the access; it is tried again shortly.",
    )


def client_failure(provider: str, detail: str) -> Failure:
    return Failure(
        stage="auth",
        category="oauth_client_rejected",
        transient=False,
        server_message=detail[:512],
        hint="The provider refused this application's own credentials: the operator must check the "
        f"{PROVIDER_LABELS.get(provider, provider)} app registration (client id and client secret).",
    )


class TokenSource:
    """Access tokens of one OAuth profile."""

    def __init__(
        self,
        secrets: SecretStore,
        secret_name: str,
        provider: OAuthProvider,
        on_revoked: Callable[[], None] = lambda: None,
    ) -> None:
        self.secrets = secrets
        self.secret_name = secret_name
        self.provider = provider
        self.on_revoked = on_revoked
        self._account: str | None = None

    @property
    def account(self) -> str:
        if self._account is None:
            self._account = self._grant(force=False).account
        return self._account

    def access_token(self, *, refresh: bool = False) -> str:
        """A valid access token; `refresh` when the provider refused the one we had."""
        cached = _ACCESS.get(self.secret_name)
        if cached and not refresh and cached[1] > time.time() + EXPIRY_MARGIN_SECONDS:
            return cached[0]
        tokens = self._refresh()
        _ACCESS[self.secret_name] = (tokens.access_token, time.time() + tokens.expires_in)
        return tokens.access_token

    def _grant(self, *, force: bool) -> Grant:
        grant = Grant.loads(self.secrets.get(self.secret_name, force_fetch=force))
        if grant is None:
            raise DeliveryFailed(reconnect_failure(self.provider.name, "no OAuth connection is stored"))
        self._account = grant.account
        return grant

    def _refresh(self) -> Tokens:
        grant = self._grant(force=False)
        try:
            tokens = self._refresh_with(grant)
        except OAuthFailure as exc:
            if exc.kind != "revoked":
                raise DeliveryFailed(self._failure(exc)) from None
            newer = self._grant(force=True)  # another container may have rotated it meanwhile
            if newer.refresh_token == grant.refresh_token:
                self._revoked(exc)
            try:
                tokens, grant = self._refresh_with(newer), newer
            except OAuthFailure as again:
                if again.kind == "revoked":
                    self._revoked(again)
                raise DeliveryFailed(self._failure(again)) from None
        if tokens.refresh_token and tokens.refresh_token != grant.refresh_token:
            self._store_rotated(grant, tokens.refresh_token)
        return tokens

    def _refresh_with(self, grant: Grant) -> Tokens:
        if grant.token_url and grant.token_url != self.provider.token_url:
            # The grant was issued for other endpoints: never send it anywhere else.
            raise OAuthFailure("revoked", "the connection was made with another sign-in endpoint")
        return self.provider.refresh(grant.refresh_token)

    def _store_rotated(self, grant: Grant, refresh_token: str) -> None:
        rotated = replace(grant, refresh_token=refresh_token, version=grant.version + 1)
        if not self.secrets.put_version(
            self.secret_name, rotated.dumps(), rotated.version_token(self.secret_name)
        ):
            logger.info("a newer refresh token was stored by another container", extra=self._log_context())

    def _revoked(self, exc: OAuthFailure) -> None:
        _ACCESS.pop(self.secret_name, None)
        logger.warning("oauth grant refused: reconnect required", extra=self._log_context())
        self.on_revoked()
        raise DeliveryFailed(reconnect_failure(self.provider.name, exc.detail)) from None

    def _failure(self, exc: OAuthFailure) -> Failure:
        if exc.kind == "client":
            return client_failure(self.provider.name, exc.detail)
        return unavailable_failure(self.provider.name, exc.detail)

    def _log_context(self) -> dict[str, Any]:
        return {"provider": self.provider.name, "secret": self.secret_name.rsplit("/", 1)[-1]}


def forget_access_tokens() -> None:
    """Tests: a cold container."""
    _ACCESS.clear()


def prime_access_token(secret_name: str, tokens: Tokens) -> None:
    """The access token of a fresh connection, so the first send needs no refresh."""
    _ACCESS[secret_name] = (tokens.access_token, time.time() + tokens.expires_in)
