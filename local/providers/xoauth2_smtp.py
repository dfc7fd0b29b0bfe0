"""An SMTP submission server on loopback that takes OAuth 2.0 access tokens with AUTH XOAUTH2.

What it imitates: `smtp.office365.com:587` and `smtp.gmail.com:587` as their documentation describes
them (Microsoft "Authenticate an IMAP, POP or SMTP connection using OAuth"; Google "OAuth 2.0
Mechanism" for IMAP, POP and SMTP).

- STARTTLS first: before it, every command but EHLO/HELO, STARTTLS, NOOP and QUIT answers 530, and
  AUTH is not offered. The TLS context is the caller's (trustme in the tests, the local CA in the
  stack).
- `AUTH XOAUTH2 <initial response>` (or `AUTH XOAUTH2` and the response after `334 `), the response
  being base64 of `user=<address>\\x01auth=Bearer <access token>\\x01\\x01`. The token must be live
  in the shared `TokenRegistry`, issued by this server's provider, carry its SMTP scope
  (Microsoft: `https://outlook.office.com/SMTP.Send`, or `SMTP.SendAsApp` for an app-only token;
  Google: `https://mail.google.com/`) and act for `user` (an app-only Microsoft token may name any
  mailbox). Success is `235 2.7.0`.
- On failure Google first sends the error challenge of its XOAUTH2 protocol: `334 ` and base64 of
  `{"status": "401", "schemes": "bearer", "scope": "https://mail.google.com/"}`; the client answers
  with an empty line (smtplib does when its auth object returns ""), then the final
  `535-5.7.8 Username and Password not accepted`. Microsoft answers
  `535 5.7.3 Authentication unsuccessful` at once. `error_challenge` switches the first behaviour on
  or off whatever the provider. Password mechanisms are offered as the providers offer them and
  always fail: Microsoft's `535 5.7.139 Authentication unsuccessful, basic authentication is
  disabled.`, Google's `535-5.7.8`.
- MAIL FROM needs an authenticated session (530 otherwise) and must be the authenticated mailbox or
  one of `aliases`: Microsoft `550 5.7.60 SMTP; Client does not have permissions to send as this
  sender`. The From header is checked too, when the message arrives: Microsoft
  `554 5.2.252 SendAsDenied`; Google rejects it, or with `from_policy="rewrite"` rewrites it to the
  account as Gmail does for an address that is not a verified alias.

Every accepted message is kept in `messages` with the envelope (mail_from, recipients), the
authenticated user, its raw bytes and the message parsed with `email.policy.default`; every AUTH
attempt is kept in `auth_attempts`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import secrets
import socket
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import formataddr, getaddresses
from types import TracebackType
from typing import Any, Literal, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult

from local.providers.mailbox import DeliveredMessage, Mailbox, may_send_as, parse, sender_addresses
from local.providers.tokens import AccessToken, TokenRegistry

MICROSOFT_SMTP_SCOPES = (
    "https://outlook.office.com/SMTP.Send",
    "https://outlook.office365.com/SMTP.Send",
)
MICROSOFT_SMTP_APP_SCOPES = (
    "https://outlook.office365.com/SMTP.SendAsApp",
    "https://outlook.office.com/SMTP.SendAsApp",
)
GOOGLE_SMTP_SCOPES = ("https://mail.google.com/",)


@dataclass(frozen=True)
class _Flavor:
    banner: str
    success: str
    failure: str
    basic_auth_failure: str
    mechanisms_excluded: tuple[str, ...]
    sender_refused: str
    send_as_denied: str
    accepted: str
    error_challenge: bool


_FLAVORS = {
    "microsoft": _Flavor(
        banner="smtp.office365.local",
        success="235 2.7.0 Authentication successful",
        failure="535 5.7.3 Authentication unsuccessful [local.prod.outlook.com]",
        basic_auth_failure="535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
        mechanisms_excluded=("PLAIN",),
        sender_refused="550 5.7.60 SMTP; Client does not have permissions to send as this sender",
        send_as_denied=(
            "554 5.2.252 SendAsDenied; {user} not allowed to send as {address}; "
            "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied"
        ),
        accepted="250 2.0.0 OK <{id}@local.prod.outlook.com> [Hostname=local.prod.outlook.com]",
        error_challenge=False,
    ),
    "google": _Flavor(
        banner="smtp.gmail.local",
        success="235 2.7.0 Accepted",
        failure=(
            "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
            "535 5.7.8  https://support.google.com/mail/?p=BadCredentials local - gsmtp"
        ),
        basic_auth_failure=(
            "535-5.7.8 Username and Password not accepted. For more information, go to\r\n"
            "535 5.7.8  https://support.google.com/mail/?p=BadCredentials local - gsmtp"
        ),
        mechanisms_excluded=(),
        sender_refused="553 5.7.1 Sender address rejected: not owned by the authenticated user - gsmtp",
        send_as_denied="553 5.7.1 {user} may not send as {address} - gsmtp",
        accepted="250 2.0.0 OK {id} - gsmtp",
        error_challenge=True,
    ),
}


@dataclass(frozen=True)
class XOAuth2Identity:
    """Who an XOAUTH2 session authenticated as: `user=` and the token behind it."""

    user: str
    account: str | None  # the token's account; None for an app-only token
    client_id: str
    token: str


@dataclass(frozen=True)
class AuthAttempt:
    user: str | None
    success: bool
    reason: str


def parse_xoauth2(blob: bytes) -> tuple[str, str] | None:
    """`user=<user>\\x01auth=Bearer <token>\\x01\\x01` -> (user, token); None when malformed."""
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return None
    fields = {}
    for part in text.split("\x01"):
        key, sep, value = part.partition("=")
        if sep:
            fields[key.strip().lower()] = value
    user, auth = fields.get("user", "").strip(), fields.get("auth", "")
    scheme, _, token = auth.partition(" ")
    if not user or scheme.lower() != "bearer" or not token.strip():
        return None
    return user, token.strip()


def xoauth2_string(user: str, token: str) -> str:
    """The client's initial response before base64, as the XOAUTH2 documentation spells it."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


class _Handler:
    def __init__(self, owner: XOAuth2SmtpServer) -> None:
        self.owner = owner

    async def auth_XOAUTH2(self, server: SMTP, args: list[str]) -> AuthResult:
        owner = self.owner
        if len(args) == 1:
            answer = await server.challenge_auth("", encode_to_b64=False)
            if answer is MISSING:
                return AuthResult(success=False, handled=True)
            assert isinstance(answer, bytes)
            blob = answer
        elif args[1] == "=":
            blob = b""
        else:
            try:
                blob = base64.b64decode(args[1], validate=True)
            except (binascii.Error, ValueError):
                await server.push("501 5.5.2 Cannot Decode response")
                return AuthResult(success=False, handled=True)
        identity, user, reason = owner.check(parse_xoauth2(blob))
        owner.record_attempt(AuthAttempt(user, identity is not None, reason))
        if identity is not None:
            return AuthResult(success=True, auth_data=identity, message=owner.flavor.success)
        if owner.error_challenge:
            challenge = json.dumps({"status": "401", "schemes": "bearer", "scope": owner.challenge_scope})
            answer = await server.challenge_auth(challenge, encode_to_b64=True)
            if answer is MISSING:
                return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message=owner.flavor.failure)

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        identity = session.auth_data
        if not isinstance(identity, XOAuth2Identity):
            return "530 5.7.57 Client not authenticated to send mail"
        if not may_send_as(address, identity.user, self.owner.aliases):
            return self.owner.flavor.sender_refused
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        identity = session.auth_data
        assert isinstance(identity, XOAuth2Identity)
        owner = self.owner
        raw: bytes = envelope.original_content or envelope.content
        message = parse(raw)
        for address in sender_addresses(message):
            if may_send_as(address, identity.user, owner.aliases):
                continue
            if owner.from_policy == "rewrite":
                names = getaddresses([str(v) for v in message.get_all("From", [])])
                del message["From"]
                del message["Sender"]
                message["From"] = formataddr((names[0][0] if names else "", identity.user))
                raw = message.as_bytes()
                message = parse(raw)
                break
            return owner.flavor.send_as_denied.format(user=identity.user, address=address)
        delivered = DeliveredMessage(
            id=secrets.token_hex(8),
            raw=raw,
            message=message,
            account=identity.account or identity.user,
            via="smtp",
            recipients=tuple(envelope.rcpt_tos),
            mail_from=envelope.mail_from,
            auth_user=identity.user,
            tls=server.transport is not None and server.transport.get_extra_info("ssl_object") is not None,
        )
        owner.mailbox.deliver(delivered, save_to_sent_items=True)
        return owner.flavor.accepted.format(id=delivered.id)


def _basic_auth_refuser(reply: str) -> Any:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        return AuthResult(success=False, handled=False, message=reply)

    return authenticate


def _free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class XOAuth2SmtpServer:
    """SMTP with STARTTLS and AUTH XOAUTH2 against the shared registry; see the module docstring."""

    def __init__(
        self,
        registry: TokenRegistry,
        *,
        server_context: ssl.SSLContext,
        flavor: Literal["microsoft", "google"] = "microsoft",
        aliases: Iterable[str] = (),
        mailboxes: Iterable[str] | None = None,
        from_policy: Literal["reject", "rewrite"] = "reject",
        error_challenge: bool | None = None,
        enforce_scopes: bool = True,
        data_size_limit: int = 35 * 1024 * 1024,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError(f"the local providers listen on loopback only, not {host!r}")
        if server_context is None:
            raise ValueError("the XOAUTH2 SMTP server needs a server-side TLS context for STARTTLS")
        self.registry = registry
        self.server_context = server_context
        self.flavor_name = flavor
        self.flavor = _FLAVORS[flavor]
        self.aliases: set[str] = {a.lower() for a in aliases}
        self.mailboxes = {m.lower() for m in mailboxes} if mailboxes is not None else None
        self.from_policy = from_policy
        self.error_challenge = self.flavor.error_challenge if error_challenge is None else error_challenge
        self.enforce_scopes = enforce_scopes
        self.data_size_limit = data_size_limit
        self.host = "127.0.0.1" if host == "localhost" else host
        self._requested_port = port
        self.port = 0
        self.mailbox = Mailbox()
        self.auth_attempts: list[AuthAttempt] = []
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    @property
    def challenge_scope(self) -> str:
        return GOOGLE_SMTP_SCOPES[0] if self.flavor_name == "google" else MICROSOFT_SMTP_SCOPES[0]

    @property
    def messages(self) -> list[DeliveredMessage]:
        return self.mailbox.delivered

    @property
    def address(self) -> str:
        """`host:port`, as the app's OAUTH_*_SMTP settings take it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"smtp://{self.address}"

    def record_attempt(self, attempt: AuthAttempt) -> None:
        with self._lock:
            self.auth_attempts.append(attempt)

    # --- the token check ---------------------------------------------------------------------------

    def check(self, parsed: tuple[str, str] | None) -> tuple[XOAuth2Identity | None, str | None, str]:
        """(identity, user, reason): the identity when the XOAUTH2 response is acceptable."""
        if parsed is None:
            return None, None, "malformed XOAUTH2 response"
        user, raw_token = parsed
        token = self.registry.inspect(raw_token)
        if token is None or token.issuer != self.flavor_name:
            return None, user, "unknown token"
        if token.revoked:
            return None, user, "revoked token"
        if token.expires_at <= self.registry.clock():
            return None, user, "expired token"
        if not self._scoped(token):
            return None, user, "token lacks the SMTP scope"
        if token.account is not None:
            if token.account.lower() != user.lower():
                return None, user, "user= is not the token's account"
        elif "@" not in user or (self.mailboxes is not None and user.lower() not in self.mailboxes):
            return None, user, "app-only token for an unknown mailbox"
        return XOAuth2Identity(user, token.account, token.client_id, token.token), user, "ok"

    def _scoped(self, token: AccessToken) -> bool:
        if not self.enforce_scopes:
            return True
        if self.flavor_name == "google":
            return token.has_any_scope(GOOGLE_SMTP_SCOPES)
        return token.has_any_scope(MICROSOFT_SMTP_APP_SCOPES if token.app_only else MICROSOFT_SMTP_SCOPES)

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._controller is not None:
            return self
        port = self._requested_port or _free_port(self.host)
        controller = Controller(
            _Handler(self),
            hostname=self.host,
            port=port,
            server_hostname=self.flavor.banner,
            ready_timeout=10,
            tls_context=self.server_context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            auth_exclude_mechanism=list(self.flavor.mechanisms_excluded),
            authenticator=_basic_auth_refuser(self.flavor.basic_auth_failure),
            data_size_limit=self.data_size_limit,
        )
        controller.start()
        self._controller = controller
        self.port = port
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            with contextlib.suppress(Exception):
                controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
