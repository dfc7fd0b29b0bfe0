"""What the local authorization servers issued, shared by every server that checks a bearer token.

One `TokenRegistry` holds the grants (one per consent or app-only request), their refresh tokens and
access tokens. The authorization servers write to it; Graph, Gmail and the XOAUTH2 SMTP servers only
read from it, the way a resource server validates the tokens its identity provider signed. Tokens
are opaque random strings: real Microsoft access tokens happen to be JWTs, but a client must not
read them (Microsoft says so), and Google's are opaque anyway.

Scopes are kept as the authorization server normalised them, in their order and case: Microsoft
scopes with their resource (`https://graph.microsoft.com/Mail.Send`), Google scopes as URLs or
OpenID names. Like the providers, the checks compare scopes without regard to case.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace


def directory_id(account: str) -> str:
    """The stable directory object id of a mailbox (Microsoft's `oid`, Graph's user `id`)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{account.lower()}"))


def unique(scopes: Iterable[str]) -> tuple[str, ...]:
    """Scopes in their order, each once (compared without regard to case)."""
    seen: dict[str, str] = {}
    for scope in scopes:
        if scope and scope.lower() not in seen:
            seen[scope.lower()] = scope
    return tuple(seen.values())


@dataclass(frozen=True)
class Grant:
    """One consent (or one app-only token request): every token issued from it dies with it."""

    grant_id: str
    issuer: str  # "microsoft" or "google"
    client_id: str
    account: str | None  # None for an app-only (client credentials) grant
    scopes: tuple[str, ...]
    offline: bool = False  # consented to refresh tokens


@dataclass(frozen=True)
class AccessToken:
    token: str
    grant_id: str
    issuer: str
    client_id: str
    account: str | None
    scopes: tuple[str, ...]
    issued_at: float
    expires_at: float
    revoked: bool = False

    @property
    def app_only(self) -> bool:
        return self.account is None

    def has_any_scope(self, wanted: Iterable[str]) -> bool:
        """Whether the token carries one of `wanted`; scopes compare without regard to case."""
        held = {scope.lower() for scope in self.scopes}
        return any(scope.lower() in held for scope in wanted)


@dataclass(frozen=True)
class RefreshToken:
    token: str
    grant_id: str
    issuer: str
    client_id: str
    account: str | None
    scopes: tuple[str, ...]
    issued_at: float
    expires_at: float | None
    revoked: bool = False
    superseded: bool = False  # rotated out: a newer refresh token of the same grant replaced it
    used: bool = False


@dataclass
class TokenRegistry:
    """Thread-safe store of grants and tokens. `clock` is wall time in seconds; tests may replace it."""

    clock: Callable[[], float] = time.time
    grants: dict[str, Grant] = field(default_factory=dict)
    access: dict[str, AccessToken] = field(default_factory=dict)
    refresh: dict[str, RefreshToken] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    # --- issuing (authorization servers) -------------------------------------------------------

    def new_grant(
        self,
        *,
        issuer: str,
        client_id: str,
        account: str | None,
        scopes: Iterable[str],
        offline: bool = False,
    ) -> Grant:
        grant = Grant(
            grant_id=secrets.token_hex(12),
            issuer=issuer,
            client_id=client_id,
            account=account or None,
            scopes=unique(scopes),
            offline=offline,
        )
        with self._lock:
            self.grants[grant.grant_id] = grant
        return grant

    def issue_access_token(
        self, grant: Grant, *, lifetime: float, scopes: Iterable[str] | None = None, prefix: str = ""
    ) -> AccessToken:
        now = self.clock()
        token = AccessToken(
            token=prefix + secrets.token_urlsafe(48),
            grant_id=grant.grant_id,
            issuer=grant.issuer,
            client_id=grant.client_id,
            account=grant.account,
            scopes=unique(scopes) if scopes is not None else grant.scopes,
            issued_at=now,
            expires_at=now + lifetime,
        )
        with self._lock:
            self.access[token.token] = token
        return token

    def issue_refresh_token(
        self, grant: Grant, *, lifetime: float | None = None, prefix: str = ""
    ) -> RefreshToken:
        now = self.clock()
        token = RefreshToken(
            token=prefix + secrets.token_urlsafe(64),
            grant_id=grant.grant_id,
            issuer=grant.issuer,
            client_id=grant.client_id,
            account=grant.account,
            scopes=grant.scopes,
            issued_at=now,
            expires_at=None if lifetime is None else now + lifetime,
        )
        with self._lock:
            self.refresh[token.token] = token
        return token

    def grant(self, grant_id: str) -> Grant | None:
        with self._lock:
            return self.grants.get(grant_id)

    def refresh_token(self, token: str) -> RefreshToken | None:
        """The refresh token as stored, whatever its state (revoked, superseded, expired)."""
        with self._lock:
            return self.refresh.get(token)

    def has_live_refresh_token(self, *, issuer: str, client_id: str, account: str | None) -> bool:
        """Whether this client still holds a usable refresh token for this account."""
        wanted = (account or "").lower()
        now = self.clock()
        with self._lock:
            return any(
                r.issuer == issuer
                and r.client_id == client_id
                and (r.account or "").lower() == wanted
                and not (r.revoked or r.superseded)
                and (r.expires_at is None or r.expires_at > now)
                for r in self.refresh.values()
            )

    def mark_refresh_used(self, token: str, *, supersede: bool) -> None:
        with self._lock:
            current = self.refresh.get(token)
            if current is not None:
                self.refresh[token] = replace(current, used=True, superseded=current.superseded or supersede)

    # --- checking (resource servers) -----------------------------------------------------------

    def inspect(self, token: str | None) -> AccessToken | None:
        """The access token as stored, expired or revoked included; None when it was never issued."""
        if not token:
            return None
        with self._lock:
            return self.access.get(token)

    def lookup(self, token: str | None) -> AccessToken | None:
        """The access token if it is live: issued here, not revoked, not expired."""
        found = self.inspect(token)
        if found is None or found.revoked or found.expires_at <= self.clock():
            return None
        return found

    def validate(self, token: str | None) -> str | None:
        """The account a live delegated access token acts for; None for anything else (app-only too)."""
        found = self.lookup(token)
        return found.account if found is not None else None

    # --- controls ------------------------------------------------------------------------------

    def revoke_grant(self, grant_id: str) -> None:
        with self._lock:
            for key, value in self.refresh.items():
                if value.grant_id == grant_id:
                    self.refresh[key] = replace(value, revoked=True)
            for key, access in self.access.items():
                if access.grant_id == grant_id:
                    self.access[key] = replace(access, revoked=True)

    def revoke_token(self, token: str) -> bool:
        """Revoke one access or refresh token and, as Google does, the whole grant it belongs to."""
        with self._lock:
            found = self.refresh.get(token) or self.access.get(token)
            if found is None or found.revoked:
                return False
            self.revoke_grant(found.grant_id)
            return True

    def revoke_all(
        self, account: str | None = None, *, issuer: str | None = None, access_tokens: bool = True
    ) -> int:
        """Revoke every refresh token (of `account`, of `issuer`), and their access tokens unless told not.

        Microsoft leaves already issued access tokens valid until they expire after a sign-in session
        revocation; pass `access_tokens=False` to imitate that. Answers how many refresh tokens died.
        """
        wanted = account.lower() if account else None
        count = 0
        with self._lock:
            for key, value in self.refresh.items():
                if self._matches(value.account, value.issuer, wanted, issuer) and not value.revoked:
                    self.refresh[key] = replace(value, revoked=True)
                    count += 1
            if access_tokens:
                for key, access in self.access.items():
                    if self._matches(access.account, access.issuer, wanted, issuer):
                        self.access[key] = replace(access, revoked=True)
        return count

    def expire_access_tokens(self, account: str | None = None, *, issuer: str | None = None) -> int:
        """Make every live access token (of `account`, of `issuer`) expired as of now."""
        wanted = account.lower() if account else None
        now = self.clock()
        count = 0
        with self._lock:
            for key, access in self.access.items():
                if self._matches(access.account, access.issuer, wanted, issuer) and access.expires_at > now:
                    self.access[key] = replace(access, expires_at=now)
                    count += 1
        return count

    def live_access_tokens(self, account: str | None = None) -> list[AccessToken]:
        wanted = account.lower() if account else None
        now = self.clock()
        with self._lock:
            return [
                a
                for a in self.access.values()
                if not a.revoked
                and a.expires_at > now
                and (wanted is None or (a.account or "").lower() == wanted)
            ]

    @staticmethod
    def _matches(account: str | None, token_issuer: str, wanted: str | None, issuer: str | None) -> bool:
        same_account = wanted is None or (account or "").lower() == wanted
        return same_account and (issuer is None or token_issuer == issuer)
