"""The caller, as the JWT authorizer's claims describe them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mailer.errors import Forbidden, Unauthenticated

_SAFE_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")


@dataclass(frozen=True)
class Caller:
    tenant_id: str
    user_id: str
    email: str | None
    is_admin: bool


def parse_groups(raw: Any) -> list[str]:
    """`cognito:groups` arrives as a list, or (HTTP API JWT authorizer) as "[a b]" or "a,b"."""
    if raw is None:
        return []
    if isinstance(raw, list | tuple):
        return [str(g) for g in raw]
    text = str(raw).strip().strip("[]")
    return [g for g in re.split(r"[\s,]+", text) if g]


def caller_from_claims(claims: Mapping[str, Any] | None) -> Caller:
    """Build the caller from JWT claims; tenant and user ids are used in keys, so they must be plain."""
    if not claims:
        raise Unauthenticated("No identity: sign in and send the ID token as a Bearer token.")
    user_id = str(claims.get("sub") or "")
    tenant_id = str(claims.get("custom:tenant_id") or "")
    if not user_id:
        raise Unauthenticated("The token carries no subject (sub) claim.")
    if not tenant_id:
        raise Forbidden("Your account is not attached to a company (no custom:tenant_id claim).")
    if not _SAFE_ID.match(tenant_id) or not _SAFE_ID.match(user_id):
        raise Forbidden("The tenant or user id in the token contains characters that are not allowed.")
    # Only a verified address is the caller's own: the app client may write `email`, and an address
    # nobody verified must not receive the company's test mail.
    verified = str(claims.get("email_verified", "")).lower() == "true"
    email = claims.get("email") if verified else None
    return Caller(
        tenant_id=tenant_id,
        user_id=user_id,
        email=str(email) if email else None,
        is_admin="admin" in parse_groups(claims.get("cognito:groups")),
    )
