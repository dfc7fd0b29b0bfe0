"""Bounce reports read over IMAP from the sending mailbox, without changing it.

The mailbox is opened read-only (EXAMINE) and messages are fetched with BODY.PEEK, so nothing is
marked \\Seen; nothing is stored, expunged, deleted or moved. Only messages whose Content-Type
mentions "report" are fetched, and of each only the first MAX_REPORT_BYTES. A cursor (the folder's
UIDVALIDITY and the highest UID looked at) makes each read start where the last one stopped.

The connection goes to the address the guard checked while TLS verifies the host name; TLS is
always on (IMAPS, or STARTTLS before anything else), so a password never travels in clear text.
Failures raise DeliveryFailed with a stage (connect, tls, auth, read), a category and a hint, with
the password and the token cut out of every text.
"""

from __future__ import annotations

import imaplib
import re
import socket
import ssl
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from mailer.delivery.classify import Category, ServerContext
from mailer.delivery.classify.smtp import rule_for
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.guard import AddressGuard, AddressNotAllowed, HostNotFound
from mailer.delivery.scrub import address_not_allowed, scrub, scrub_text
from mailer.delivery.tls import client_context
from mailer.tracking.dsn import MAX_REPORT_BYTES, BounceReport, parse_report

SECURITY = ("ssl", "starttls")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
REPORT_SEARCH = ("HEADER", "Content-Type", "report")  # multipart/report; only these are fetched
NUMBERS = re.compile(rb"\d+")


@dataclass(frozen=True)
class MailboxCursor:
    uidvalidity: int | None  # None: never read
    last_uid: int  # the highest UID already looked at


NEVER_READ = MailboxCursor(uidvalidity=None, last_uid=0)


@dataclass(frozen=True)
class MailboxAccount:
    host: str
    port: int
    security: str  # ssl (IMAPS, usually 993) | starttls (usually 143)
    username: str
    password: str | None = field(default=None, repr=False)
    oauth_token: str | None = field(default=None, repr=False)  # set: AUTHENTICATE XOAUTH2, not LOGIN

    def __post_init__(self) -> None:
        if self.security not in SECURITY:
            raise ValueError(f"security must be ssl or starttls, not {self.security!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is not a TCP port")
        for name in ("host", "username", "password", "oauth_token"):
            value = getattr(self, name)
            if value is not None and any(c in value for c in "\r\n\0"):
                raise ValueError(f"{name} must not contain CR, LF or NUL")
        if not self.host or not self.username:
            raise ValueError("host and username are required")
        if self.password is None and self.oauth_token is None:
            raise ValueError("a password or an OAuth token is required")

    @property
    def secrets(self) -> list[str]:
        return [s for s in (self.password, self.oauth_token) if s]


@dataclass(frozen=True)
class MailboxRead:
    reports: list[tuple[int, BounceReport]]  # (uid, report), oldest first
    cursor: MailboxCursor  # where the next read starts


def read_reports(
    account: MailboxAccount,
    cursor: MailboxCursor,
    *,
    timeout: float,
    extra_ca_bundle: str | None = None,
    guard: AddressGuard | None = None,
    max_messages: int = 200,
    first_read_days: int = 7,
    folder: str = "INBOX",
) -> MailboxRead:
    """The bounce reports that arrived in `folder` after `cursor`, at most `max_messages` messages.

    A cursor of another UIDVALIDITY (the folder was recreated) or a never-read one starts over with
    the mail of the last `first_read_days` days."""
    if max_messages < 1 or first_read_days < 0:
        raise ValueError("max_messages must be at least 1 and first_read_days not negative")
    mailbox = _quoted(folder)
    progress = _Progress()
    conn: _PinnedIMAP4 | None = None
    answers = True  # False once the server stopped answering: then LOGOUT would only wait
    try:
        conn = _connect(account, client_context(extra_ca_bundle), guard or AddressGuard(), timeout, progress)
        progress.stage = "auth"
        _sign_in(conn, account)
        progress.stage = "read"
        return _read(conn, mailbox, cursor, max_messages=max_messages, first_read_days=first_read_days)
    except DeliveryFailed as exc:
        raise DeliveryFailed(_scrubbed(exc.failure, account)) from None
    except Exception as exc:
        failure = classify_imap_error(exc, progress.stage, account)
        answers = failure.category not in (Category.TIMEOUT, Category.CONNECTION_LOST)
        if progress.stage == "auth":  # a refused sign-in's own error could quote a credential back
            raise DeliveryFailed(_scrubbed(failure, account)) from None
        raise DeliveryFailed(_scrubbed(failure, account)) from exc
    finally:
        _close(conn, logout=answers)


# --- connecting ------------------------------------------------------------------------------------


@dataclass
class _Progress:
    """How far the session got: the stage a failure is reported in."""

    stage: str = "connect"


class _PinnedIMAP4(imaplib.IMAP4):
    """Connects to the address the guard checked (`address`); the host name stays what TLS checks."""

    def __init__(self, host: str, port: int, *, address: str, timeout: float, progress: _Progress) -> None:
        self.address = address
        self.progress = progress
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        self.progress.stage = "connect"
        sys.audit("imaplib.open", self, self.address, self.port)
        return socket.create_connection((self.address, self.port), timeout)


class _PinnedIMAP4_SSL(_PinnedIMAP4):
    """IMAPS: TLS from the first byte, verified against the host name."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        address: str,
        timeout: float,
        progress: _Progress,
        context: ssl.SSLContext,
    ) -> None:
        self.context = context
        super().__init__(host, port, address=address, timeout=timeout, progress=progress)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        sock = super()._create_socket(timeout)
        self.progress.stage = "tls"
        try:
            return self.context.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise


def _connect(
    account: MailboxAccount, tls: ssl.SSLContext, guard: AddressGuard, timeout: float, progress: _Progress
) -> _PinnedIMAP4:
    try:
        address = guard.resolve(account.host, account.port)
    except AddressNotAllowed as exc:
        raise DeliveryFailed(address_not_allowed(account.host, exc.address)) from None
    except HostNotFound:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
    if account.security == "ssl":
        return _PinnedIMAP4_SSL(
            account.host, account.port, address=address, timeout=timeout, progress=progress, context=tls
        )
    conn = _PinnedIMAP4(account.host, account.port, address=address, timeout=timeout, progress=progress)
    progress.stage = "tls"
    try:
        if "STARTTLS" not in conn.capabilities:
            raise DeliveryFailed(
                _failure(Category.STARTTLS_UNAVAILABLE, "tls", STARTTLS_UNAVAILABLE, account)
            )
        conn.starttls(tls)
    except BaseException:
        _close(conn, logout=False)
        raise
    return conn


def _sign_in(conn: imaplib.IMAP4, account: MailboxAccount) -> None:
    if account.oauth_token is not None:
        if "AUTH=XOAUTH2" not in conn.capabilities:
            raise DeliveryFailed(_failure(Category.AUTH_UNSUPPORTED, "auth", XOAUTH2_UNSUPPORTED, account))
        conn.authenticate("XOAUTH2", _xoauth2(account.username, account.oauth_token))
        return
    if "LOGINDISABLED" in conn.capabilities:
        raise DeliveryFailed(_failure(Category.AUTH_UNSUPPORTED, "auth", LOGIN_DISABLED, account))
    account.username.encode("ascii")  # LOGIN carries ASCII only (UnicodeError: the NOT_ASCII hint)
    conn.login(_quoted(account.username), account.password or "")


def _xoauth2(username: str, token: str) -> Callable[[bytes], bytes]:
    """XOAUTH2 (Google's and Microsoft's SASL mechanism): the first answer is the token; after a
    refusal the server sends a JSON error as a challenge, answered with an empty line."""
    answers = iter([f"user={username}\x01auth=Bearer {token}\x01\x01".encode()])
    return lambda challenge: next(answers, b"")


def _close(conn: imaplib.IMAP4 | None, *, logout: bool = True) -> None:
    """LOGOUT when the server still answers; the socket is closed in any case."""
    if conn is None:
        return
    if logout:
        try:
            conn.logout()  # closes the socket too
            return
        except (imaplib.IMAP4.error, OSError):
            pass
    try:
        conn.shutdown()
    except OSError:
        pass


# --- reading -------------------------------------------------------------------------------------


def _read(
    conn: imaplib.IMAP4, mailbox: str, cursor: MailboxCursor, *, max_messages: int, first_read_days: int
) -> MailboxRead:
    _ok(conn.select(mailbox, readonly=True), f"EXAMINE {mailbox}")
    uidvalidity, uidnext = _number(conn, "UIDVALIDITY"), _number(conn, "UIDNEXT")
    if uidvalidity is None:
        raise imaplib.IMAP4.error("the server did not give the folder's UIDVALIDITY")
    fresh = cursor.uidvalidity != uidvalidity
    if fresh:
        since = datetime.now(UTC).date() - timedelta(days=first_read_days)
        criteria: tuple[str, ...] = ("SINCE", f"{since.day}-{MONTHS[since.month - 1]}-{since.year}")
        floor = 0
    else:
        criteria, floor = ("UID", f"{cursor.last_uid + 1}:*"), cursor.last_uid
    seen = {uid for uid in _search(conn, *criteria) if uid > floor}  # n:* also gives the top UID below n
    reports = sorted(seen & {uid for uid in _search(conn, *criteria, *REPORT_SEARCH) if uid > floor})
    handled = reports[:max_messages]
    if len(reports) > max_messages:
        last_uid = handled[-1]  # the rest waits for the next read
    else:
        last_uid = max(seen, default=floor)
        if fresh:  # what is older than the first read's window is never read
            last_uid = max(last_uid, (uidnext or 1) - 1)
    found = [(uid, report) for uid in handled for report in parse_report(_fetch(conn, uid))]
    return MailboxRead(reports=found, cursor=MailboxCursor(uidvalidity=uidvalidity, last_uid=last_uid))


def _search(conn: imaplib.IMAP4, *criteria: str) -> list[int]:
    data = _ok(conn.uid("SEARCH", *criteria), "UID SEARCH")
    return [int(n) for line in data if isinstance(line, bytes) for n in NUMBERS.findall(line)]


def _fetch(conn: imaplib.IMAP4, uid: int) -> bytes:
    """The message's first MAX_REPORT_BYTES, without setting \\Seen; b"" when it is gone."""
    data = _ok(conn.uid("FETCH", str(uid), f"(BODY.PEEK[]<0.{MAX_REPORT_BYTES}>)"), "UID FETCH")
    for item in data:
        if isinstance(item, tuple) and b"BODY[" in item[0] and isinstance(item[1], bytes):
            return item[1]
    return b""


def _ok(answer: tuple[str, list[Any]], command: str) -> list[Any]:
    status, data = answer
    if status != "OK":
        said = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise imaplib.IMAP4.error(f"{command}: {said}")
    return data


def _number(conn: imaplib.IMAP4, code: str) -> int | None:
    """A number the last SELECT gave in a response code ([UIDVALIDITY 3857529045])."""
    _, values = conn.response(code)
    for value in values or ():
        if isinstance(value, bytes) and value.strip().isdigit():
            return int(value)
    return None


def _quoted(text: str) -> str:
    """An IMAP quoted string; folder names must be printable ASCII (no modified UTF-7 here)."""
    if not text or not all(" " <= c <= "~" for c in text):
        raise ValueError(f"{text!r} must be printable ASCII")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# --- failures ------------------------------------------------------------------------------------

STARTTLS_UNAVAILABLE = (
    "The IMAP server at {where} does not offer STARTTLS, so the password would travel unencrypted; "
    "it was not sent. Choose ssl (usually port 993)."
)
XOAUTH2_UNSUPPORTED = (
    "The IMAP server at {where} does not offer XOAUTH2, so the connected account cannot sign in "
    "there. Check the server name (outlook.office365.com for Microsoft 365, imap.gmail.com for "
    "Google), or sign in with a password."
)
LOGIN_DISABLED = (
    "The IMAP server at {where} does not accept a password here (LOGINDISABLED). Check the port and "
    "security (993 with ssl, or 143 with starttls), or connect the account instead."
)
SIGN_IN_REFUSED = "The IMAP server refused to sign in as {username!r}. {advice}"
ACCESS_REFUSED = (
    "The IMAP server refused the access token of {username!r}. Connect the account again; the token "
    "must allow IMAP (Microsoft 365: the IMAP.AccessAsUser.All permission, and IMAP enabled for the "
    "mailbox; Google: the https://mail.google.com/ scope)."
)
NOT_ASCII = (
    "The username or password holds characters that IMAP LOGIN cannot carry (only plain ASCII). "
    "Use an app password, which is plain ASCII."
)
NOT_IMAP = (
    "What answers at {where} is not an IMAP server: it did not greet in IMAP. Check the server "
    "name and port of your provider's incoming (IMAP) server (993 with ssl, 143 with starttls)."
)
SESSION_REFUSED = "The IMAP server at {where} refused the session: {message}. Try again later."
FOLDER_REFUSED = (
    "The IMAP server could not open or search the folder during {stage}: {message}. Check the folder "
    "name (INBOX is the inbox)."
)
MICROSOFT_SIGN_IN = (
    "Microsoft 365 does not take passwords over IMAP (basic authentication is off in Exchange "
    "Online): connect the account instead, and check that IMAP is enabled for the mailbox (Microsoft "
    "365 admin center > the user > Mail > Manage email apps > IMAP)."
)
GOOGLE_SIGN_IN = (
    "Google accounts need an app password for IMAP (myaccount.google.com/apppasswords) instead of "
    "the normal password, or connect the account instead."
)
GENERIC_SIGN_IN = (
    "Check the IMAP username (usually the full email address) and password. If the account uses "
    "two-step verification, use an app password; some providers also need IMAP enabled for the "
    "mailbox first."
)

# What the user reads for each category of the socket and TLS errors (classify.smtp sorts those).
NETWORK_HINTS: dict[str, str] = {
    Category.DNS: "The IMAP server name {host!r} could not be found. Check its spelling (for example "
    "outlook.office365.com or imap.gmail.com).",
    Category.CONNECTION_REFUSED: "Nothing accepts connections on {where}. Check the IMAP server name "
    "and port (993 for ssl, 143 for starttls).",
    Category.NETWORK_UNREACHABLE: "Could not reach {where}: {error}. Check the IMAP server name and port.",
    Category.CONNECTION_FAILED: "Could not reach {where}: {error}. Check the IMAP server name and port.",
    Category.TIMEOUT: "The IMAP server at {where} stopped answering during {stage}. A firewall may "
    "block the port, or the server is slow; the next read tries again.",
    Category.CONNECTION_LOST: "The IMAP server at {where} closed the connection during {stage}. This "
    "is usually temporary; the next read tries again.",
    Category.CERTIFICATE: "The certificate of {host} could not be trusted ({message}). Use the exact "
    "server name your provider gives (the one on its certificate); a self-signed certificate must be "
    "replaced or its CA added to MAILER_EXTRA_CA_BUNDLE by the operator.",
    Category.TLS_HANDSHAKE: "The secure connection to {where} failed. Check that the port and security "
    "match what your provider documents (993 with ssl, or 143 with starttls).",
}
SSL_ON_PLAIN_PORT = (
    "Port {port} does not start with TLS. Choose starttls for this port, or port 993 with ssl."
)
PLAIN_ON_SSL_PORT = "No IMAP greeting on {where}. Port 993 expects TLS from the start: choose ssl."
UNKNOWN = "Reading the mailbox failed during {stage}: {error_type}. Check the settings and try again."


@dataclass(frozen=True)
class ImapRule:
    """One row of IMAP_RULES: the error and stage it matches, and the failure it becomes."""

    types: type[BaseException] | tuple[type[BaseException], ...]
    category: Category
    hint: str
    stage: str | None = None  # None: the stage the session was in
    transient: bool = False
    quote: bool = True  # False: the text is not the server's, or could show another service's banner
    when: Callable[[BaseException, str, MailboxAccount], bool] | None = None

    def matches(self, exc: BaseException, stage: str, account: MailboxAccount) -> bool:
        return isinstance(exc, self.types) and (self.when is None or self.when(exc, stage, account))


def _in(*stages: str) -> Callable[[BaseException, str, MailboxAccount], bool]:
    return lambda exc, stage, account: stage in stages


def _with_token(exc: BaseException, stage: str, account: MailboxAccount) -> bool:
    return stage == "auth" and account.oauth_token is not None


def _no_greeting(exc: BaseException, stage: str, account: MailboxAccount) -> bool:
    return stage in ("connect", "tls") and "unexpected response" in str(exc)


def _plain_on_993(exc: BaseException, stage: str, account: MailboxAccount) -> bool:
    return stage == "connect" and account.security == "starttls" and account.port == 993


# imaplib's own errors, read top to bottom, first match wins; every other error goes to
# classify.smtp's table, which sorts socket and TLS errors for every transport alike.
IMAP_RULES: tuple[ImapRule, ...] = (
    ImapRule(imaplib.IMAP4.abort, Category.PROTOCOL, NOT_IMAP, quote=False, when=_no_greeting),
    ImapRule(
        imaplib.IMAP4.abort, Category.CONNECTION_LOST, NETWORK_HINTS[Category.CONNECTION_LOST], transient=True
    ),
    ImapRule(
        imaplib.IMAP4.error, Category.SERVER_UNAVAILABLE, SESSION_REFUSED, transient=True, when=_in("connect")
    ),
    ImapRule(imaplib.IMAP4.error, Category.AUTH_FAILED, ACCESS_REFUSED, when=_with_token),
    ImapRule(imaplib.IMAP4.error, Category.AUTH_FAILED, SIGN_IN_REFUSED, when=_in("auth")),
    ImapRule(
        imaplib.IMAP4.error, Category.TLS_HANDSHAKE, NETWORK_HINTS[Category.TLS_HANDSHAKE], when=_in("tls")
    ),
    ImapRule(imaplib.IMAP4.error, Category.PROTOCOL, FOLDER_REFUSED, when=_in("read")),
    ImapRule(UnicodeError, Category.AUTH_FAILED, NOT_ASCII, quote=False, when=_in("auth")),
    # After the handshake a TLS error is the connection breaking, not the handshake failing.
    ImapRule(
        ssl.SSLError,
        Category.CONNECTION_LOST,
        NETWORK_HINTS[Category.CONNECTION_LOST],
        transient=True,
        when=_in("auth", "read"),
    ),
    ImapRule(
        TimeoutError, Category.TIMEOUT, PLAIN_ON_SSL_PORT, transient=True, quote=False, when=_plain_on_993
    ),
)


def classify_imap_error(exc: BaseException, stage: str, account: MailboxAccount) -> Failure:
    """imaplib, socket and ssl errors -> Failure. Socket and TLS errors get the category, stage and
    transience classify.smtp gives them (one sorting for every mail protocol), and an IMAP hint."""
    fields = _hint_fields(exc, stage, account)
    rule = next((r for r in IMAP_RULES if r.matches(exc, stage, account)), None)
    if rule is not None:
        at = rule.stage or stage
        return Failure(
            stage=at,
            category=rule.category,
            transient=rule.transient,
            server_message=fields["message"] if rule.quote else None,
            hint=rule.hint.format(**fields | {"stage": at}),
        )
    context = ServerContext(host=account.host, port=account.port, security=account.security)
    smtp_rule, facts = rule_for(exc, stage, context)
    failure = smtp_rule.failure(facts)
    hint = NETWORK_HINTS.get(failure.category, UNKNOWN)
    if failure.category == Category.TLS_HANDSHAKE and account.security == "ssl" and account.port != 993:
        hint = SSL_ON_PLAIN_PORT
    return replace(failure, smtp_code=None, hint=hint.format(**fields | {"stage": failure.stage}))


def _hint_fields(exc: BaseException | None, stage: str, account: MailboxAccount) -> dict[str, Any]:
    raw = exc.args[0] if isinstance(exc, imaplib.IMAP4.error) and exc.args else None
    if isinstance(raw, bytes):  # imaplib raises LOGIN's refusal with the server's bytes
        message = raw.decode("utf-8", "replace")
    elif isinstance(exc, ssl.SSLCertVerificationError):
        message = exc.verify_message or str(exc)
    else:
        message = "" if exc is None else str(exc)
    return {
        "where": f"{account.host}:{account.port}",
        "host": account.host,
        "port": account.port,
        "stage": stage,
        "username": account.username,
        "message": " ".join(message.split())[:500] or None,
        "error": getattr(exc, "strerror", None) or exc,
        "error_type": type(exc).__name__,
        "advice": _password_advice(account.host),
    }


def _password_advice(host: str) -> str:
    name = host.lower().rstrip(".")
    if name.endswith(("office365.com", "outlook.com")):
        return MICROSOFT_SIGN_IN
    if name.endswith(("gmail.com", "googlemail.com")):
        return GOOGLE_SIGN_IN
    return GENERIC_SIGN_IN


def _failure(category: Category, stage: str, hint: str, account: MailboxAccount) -> Failure:
    return Failure(
        stage=stage,
        category=category,
        transient=False,
        hint=hint.format(**_hint_fields(None, stage, account)),
    )


def _scrubbed(failure: Failure, account: MailboxAccount) -> Failure:
    """No password or token in anything the user or the log sees."""
    cleaned = scrub(failure, account.secrets, account.username)
    return replace(cleaned, hint=scrub_text(cleaned.hint, account.secrets, account.username) or cleaned.hint)


__all__ = [
    "NEVER_READ",
    "MailboxAccount",
    "MailboxCursor",
    "MailboxRead",
    "classify_imap_error",
    "read_reports",
]
