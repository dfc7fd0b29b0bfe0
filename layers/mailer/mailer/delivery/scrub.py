"""What a server says goes back to users and into the sent log: never with a credential in it.

A server may echo the sign-in line (`535 ... AUTH PLAIN AGJpbGxpbmcAc2VjcmV0`): the password, its
base64 forms and the PLAIN and LOGIN tokens are cut out of every server text, which is also capped.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import replace

from mailer.delivery.failures import Failure

MAX_SERVER_TEXT = 512
HIDDEN = "[hidden]"


def _b64(text: str) -> set[str]:
    """The base64 forms a secret can take in a reply: padded, unpadded, urlsafe."""
    raw = text.encode("utf-8", "surrogatepass")
    forms = {base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()}
    return forms | {f.rstrip("=") for f in forms}


def secret_forms(secrets: Iterable[str], username: str | None) -> list[str]:
    """Every string that would give a secret away, longest first (so no part is left behind)."""
    forms: set[str] = set()
    for secret in (s for s in secrets if s):
        forms |= {secret} | _b64(secret)
        if username:
            # AUTH PLAIN's token, and AUTH LOGIN's first line (the username) that comes with it.
            forms |= (
                _b64(f"\0{username}\0{secret}") | _b64(f"{username}\0{username}\0{secret}") | _b64(username)
            )
            forms |= _b64(f"user={username}\x01auth=Bearer {secret}\x01\x01")
    return sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)


def scrub_text(text: str | None, secrets: Iterable[str], username: str | None = None) -> str | None:
    if not text:
        return text
    for form in secret_forms(secrets, username):
        text = text.replace(form, HIDDEN)
    return text[:MAX_SERVER_TEXT]


def scrub(failure: Failure, secrets: Iterable[str], username: str | None = None) -> Failure:
    cleaned = scrub_text(failure.server_message, secrets, username)
    refused = {k: scrub_text(v, secrets, username) or "" for k, v in failure.refused.items()}
    return replace(failure, server_message=cleaned, refused=refused)


def address_not_allowed(host: str, address: str) -> Failure:
    return Failure(
        stage="connect",
        category="address_not_allowed",
        transient=False,
        hint=f"{host} is, or resolves to, an internal address ({address}); mail is only sent to public "
        "mail servers. An operator can admit an on-premises relay with MAILER_ALLOWED_NETWORKS.",
    )
