"""SMTP, ssl and socket errors -> Failure, through one ordered table (SMTP_RULES): first match wins.

A rule names the exception types it applies to and, optionally, what else must hold: the errno, the
SMTP reply codes, an enhanced status code or a pattern in the reply, a condition on the settings or
the stage. The most specific rules come first.
"""

from __future__ import annotations

import errno
import re
import smtplib
import socket
import ssl
from collections.abc import Callable, Collection
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from mailer.delivery.classify.categories import Category
from mailer.delivery.classify.hints import Hint, render, sign_in_advice
from mailer.delivery.failures import Failure

TRANSIENT_CODES = frozenset({421, 450, 451, 452})
TEMPORARY_CODES = range(400, 500)
RATE_WORDS = re.compile(r"rate|too many|limit|throttl|try again later|slow down|quota", re.IGNORECASE)
SIZE_EXCEEDED = re.compile(r"size.*exceed|exceed.*size", re.IGNORECASE)
NO_AUTH_METHOD = re.compile("authentication method")  # smtplib: "No suitable authentication method found."
UNREACHABLE_ERRNOS = (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL)

# The stage an SMTP reply error belongs to, whatever the caller was doing when it surfaced.
COMMAND_STAGES: tuple[tuple[type[smtplib.SMTPException], str], ...] = (
    (smtplib.SMTPConnectError, "connect"),
    (smtplib.SMTPSenderRefused, "envelope"),
    (smtplib.SMTPRecipientsRefused, "envelope"),
    (smtplib.SMTPDataError, "data"),
)


@dataclass(frozen=True)
class ServerContext:
    """What the hints may mention about the connection that failed."""

    host: str
    port: int
    security: str
    username: str | None = None
    from_email: str | None = None


def _decode(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:500] or None


@dataclass(frozen=True)
class Facts:
    """What the rules look at: the error, the stage the caller was in, the settings, and the reply."""

    exc: BaseException
    stage: str
    ctx: ServerContext
    codes: tuple[int, ...] = ()  # SMTP reply codes; one per refused recipient for SMTPRecipientsRefused
    text: str = ""  # the server's reply, decoded; for other errors their own wording
    refused: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, exc: BaseException, stage: str, ctx: ServerContext) -> Facts:
        if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(exc.__context__, TimeoutError):
            exc = exc.__context__  # smtplib reports a timed-out read as "Connection unexpectedly closed"
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            replies = list(exc.recipients.values())
            return cls(
                exc,
                stage,
                ctx,
                codes=tuple(code for code, _ in replies),
                text=(_decode(replies[0][1]) if replies else None) or "",
                refused={addr: f"{code} {_decode(msg)}" for addr, (code, msg) in exc.recipients.items()},
            )
        if isinstance(exc, smtplib.SMTPResponseException):
            return cls(exc, stage, ctx, codes=(exc.smtp_code,), text=_decode(exc.smtp_error) or "")
        if isinstance(exc, ssl.SSLCertVerificationError):
            return cls(exc, stage, ctx, text=exc.verify_message or str(exc))
        return cls(exc, stage, ctx, text=str(exc))

    @property
    def server_message(self) -> str | None:
        replied = isinstance(self.exc, smtplib.SMTPResponseException | smtplib.SMTPRecipientsRefused)
        return self.text if replied else _decode(self.text)

    def raised_in(self) -> str:
        return next((stage for kind, stage in COMMAND_STAGES if isinstance(self.exc, kind)), self.stage)

    def hint_fields(self, stage: str) -> dict[str, Any]:
        ctx = self.ctx
        return {
            "where": f"{ctx.host}:{ctx.port}",
            "host": ctx.host,
            "port": ctx.port,
            "stage": stage,
            "username": ctx.username,
            "from_email": ctx.from_email,
            "code": self.codes[0] if self.codes else None,
            "message": self.server_message,
            "refused": ", ".join(sorted(self.refused)),
            "error": getattr(self.exc, "strerror", None) or self.exc,
            "error_type": type(self.exc).__name__,
            "sign_in_advice": sign_in_advice(ctx.host),
        }


Types = type[BaseException] | tuple[type[BaseException], ...]


@dataclass(frozen=True)
class Rule:
    """One row: what the error must look like (types .. when), and the failure it becomes."""

    types: Types
    category: Category
    hint: Hint
    _: KW_ONLY
    stage: str | None = None  # None: where it was raised (Facts.raised_in)
    transient: bool = False
    quote: bool = True  # False: the error's text is ours, not the server's (or could hold the password)
    unless: Types = ()
    errnos: Collection[int] | None = None
    codes: Collection[int] | None = None  # every reply code is one of these
    status: str | None = None  # this enhanced status code is in the reply
    pattern: re.Pattern[str] | None = None  # found in the reply
    when: Callable[[Facts], bool] | None = None  # a condition on the settings or the stage

    def matches(self, facts: Facts) -> bool:
        exc = facts.exc
        return (
            isinstance(exc, self.types)
            and not isinstance(exc, self.unless)
            and (self.errnos is None or getattr(exc, "errno", None) in self.errnos)
            and (self.codes is None or (bool(facts.codes) and all(c in self.codes for c in facts.codes)))
            and (self.status is None or self.status in facts.text)
            and (self.pattern is None or self.pattern.search(facts.text) is not None)
            and (self.when is None or self.when(facts))
        )

    def failure(self, facts: Facts) -> Failure:
        stage = self.stage or facts.raised_in()
        return Failure(
            stage=stage,
            category=self.category,
            transient=self.transient,
            smtp_code=facts.codes[0] if facts.codes else None,
            server_message=facts.server_message if self.quote else None,
            refused=dict(facts.refused),
            hint=render(self.hint, **facts.hint_fields(stage)),
        )


def _ssl_on_other_port(facts: Facts) -> bool:
    return facts.ctx.security == "ssl" and facts.ctx.port != 465


def _clear_text_connect_to_465(facts: Facts) -> bool:
    return facts.stage == "connect" and facts.ctx.security != "ssl" and facts.ctx.port == 465


def _signing_in(facts: Facts) -> bool:
    return facts.stage == "auth"


_MAIL_OR_DATA = (smtplib.SMTPSenderRefused, smtplib.SMTPDataError)

SMTP_RULES: tuple[Rule, ...] = (
    # --- name lookup, TCP and TLS: before the server said anything ---------------------------------
    Rule(
        socket.gaierror, Category.DNS, Hint.DNS, stage="connect", transient=True, errnos=(socket.EAI_AGAIN,)
    ),
    Rule(socket.gaierror, Category.DNS, Hint.DNS, stage="connect"),
    Rule(ssl.SSLCertVerificationError, Category.CERTIFICATE, Hint.CERTIFICATE, stage="tls"),
    Rule(ssl.SSLError, Category.TLS_HANDSHAKE, Hint.TLS_ON_PLAIN_PORT, stage="tls", when=_ssl_on_other_port),
    Rule(ssl.SSLError, Category.TLS_HANDSHAKE, Hint.TLS_HANDSHAKE, stage="tls"),
    Rule(
        TimeoutError,
        Category.TIMEOUT,
        Hint.TIMEOUT_IMPLICIT_TLS_PORT,
        transient=True,
        quote=False,
        when=_clear_text_connect_to_465,
    ),
    Rule(TimeoutError, Category.TIMEOUT, Hint.TIMEOUT, transient=True, quote=False),
    Rule(
        ConnectionRefusedError,
        Category.CONNECTION_REFUSED,
        Hint.CONNECTION_REFUSED,
        stage="connect",
        transient=True,
    ),
    Rule(
        (smtplib.SMTPServerDisconnected, ConnectionResetError, BrokenPipeError),
        Category.CONNECTION_LOST,
        Hint.CONNECTION_LOST,
        transient=True,
    ),
    # smtplib's own errors are OSErrors too: they are for the rows below.
    Rule(
        OSError,
        Category.NETWORK_UNREACHABLE,
        Hint.UNREACHABLE,
        stage="connect",
        transient=True,
        unless=smtplib.SMTPException,
        errnos=UNREACHABLE_ERRNOS,
    ),
    Rule(
        OSError,
        Category.CONNECTION_FAILED,
        Hint.UNREACHABLE,
        stage="connect",
        transient=True,
        unless=smtplib.SMTPException,
    ),
    # --- SMTP replies ------------------------------------------------------------------------------
    # Not a mail server at all (an SSH or HTTP banner): its words are not shown, so the test-send
    # cannot be used to read other services' banners.
    Rule(
        smtplib.SMTPResponseException,
        Category.PROTOCOL,
        Hint.NOT_SMTP,
        stage="connect",
        codes=(-1,),
        quote=False,
    ),
    # A refused sign-in is auth_failed whatever its code, so it comes before the throttling rows.
    Rule(smtplib.SMTPAuthenticationError, Category.AUTH_FAILED, Hint.AUTH_FAILED, stage="auth"),
    Rule(_MAIL_OR_DATA, Category.MESSAGE_TOO_LARGE, Hint.MESSAGE_TOO_LARGE, codes=(552,)),
    Rule(_MAIL_OR_DATA, Category.MESSAGE_TOO_LARGE, Hint.MESSAGE_TOO_LARGE, status="5.3.4"),
    Rule(_MAIL_OR_DATA, Category.MESSAGE_TOO_LARGE, Hint.MESSAGE_TOO_LARGE, pattern=SIZE_EXCEEDED),
    # Throttled: every reply code temporary (every refused recipient, for RCPT), or a 4xx about rates.
    Rule(
        (smtplib.SMTPResponseException, smtplib.SMTPRecipientsRefused),
        Category.THROTTLED,
        Hint.THROTTLED,
        transient=True,
        codes=TRANSIENT_CODES,
    ),
    Rule(
        smtplib.SMTPResponseException,
        Category.THROTTLED,
        Hint.THROTTLED,
        transient=True,
        codes=TEMPORARY_CODES,
        pattern=RATE_WORDS,
    ),
    # What is left of each command's refusals.
    Rule(smtplib.SMTPSenderRefused, Category.SENDER_REJECTED, Hint.SENDER_REJECTED, stage="envelope"),
    Rule(
        smtplib.SMTPRecipientsRefused, Category.RECIPIENT_REJECTED, Hint.RECIPIENT_REJECTED, stage="envelope"
    ),
    Rule(smtplib.SMTPDataError, Category.MESSAGE_REJECTED, Hint.MESSAGE_REJECTED, stage="data"),
    Rule(smtplib.SMTPConnectError, Category.SERVER_UNAVAILABLE, Hint.SERVER_UNAVAILABLE, stage="connect"),
    Rule(smtplib.SMTPNotSupportedError, Category.AUTH_UNSUPPORTED, Hint.AUTH_UNSUPPORTED, stage="auth"),
    Rule(
        smtplib.SMTPException,
        Category.AUTH_UNSUPPORTED,
        Hint.AUTH_UNSUPPORTED,
        stage="auth",
        pattern=NO_AUTH_METHOD,
    ),
    Rule(smtplib.SMTPResponseException, Category.PROTOCOL, Hint.PROTOCOL),
    # --- everything else ---------------------------------------------------------------------------
    Rule(
        UnicodeError, Category.AUTH_FAILED, Hint.AUTH_NOT_ASCII, stage="auth", quote=False, when=_signing_in
    ),
    Rule(BaseException, Category.UNKNOWN, Hint.UNKNOWN),
)


def rule_for(exc: BaseException, stage: str, ctx: ServerContext) -> tuple[Rule, Facts]:
    facts = Facts.of(exc, stage, ctx)
    return next(rule for rule in SMTP_RULES if rule.matches(facts)), facts


def classify_smtp_error(exc: BaseException, stage: str, ctx: ServerContext) -> Failure:
    """One mapping for every SMTP-side failure, so every function reports them alike."""
    rule, facts = rule_for(exc, stage, ctx)
    return rule.failure(facts)


def starttls_unavailable(ctx: ServerContext) -> Failure:
    return Failure(
        stage="tls",
        category=Category.STARTTLS_UNAVAILABLE,
        transient=False,
        hint=render(Hint.STARTTLS_UNAVAILABLE, where=f"{ctx.host}:{ctx.port}"),
    )


def insecure_auth_refused(ctx: ServerContext) -> Failure:
    return Failure(
        stage="auth",
        category=Category.INSECURE_AUTH_REFUSED,
        transient=False,
        hint=render(Hint.INSECURE_AUTH_REFUSED),
    )


def every_visible_recipient_refused(refused: dict[str, str], visible: list[str]) -> Failure | None:
    """The server took the message for BCC copies only: the people it was for did not get it."""
    if not visible or not all(addr in refused for addr in visible):
        return None
    first = refused[visible[0]]
    code_text, _, text = first.partition(" ")
    return Failure(
        stage="envelope",
        category=Category.RECIPIENT_REJECTED,
        transient=False,
        smtp_code=int(code_text) if code_text.isdigit() else None,
        server_message=text or first,
        refused=dict(refused),
        hint=render(Hint.VISIBLE_RECIPIENTS_REJECTED, refused=", ".join(visible)),
    )
