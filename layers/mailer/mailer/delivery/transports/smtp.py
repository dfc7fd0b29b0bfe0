"""SMTP transport on smtplib: TLS verified, credentials never in clear text, one connection per batch.

Where the server offers PIPELINING (RFC 2920) a message goes as one group of commands and costs one
round trip on an open connection instead of four or more (`_PipelinedTransaction`).
"""

from __future__ import annotations

import re
import smtplib
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

from mailer.delivery.classify import (
    ServerContext,
    classify_smtp_error,
    insecure_auth_refused,
    starttls_unavailable,
)
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.guard import AddressGuard, AddressNotAllowed, HostNotFound
from mailer.delivery.message import OutgoingMessage
from mailer.delivery.scrub import address_not_allowed, scrub
from mailer.delivery.tls import client_context
from mailer.delivery.transports.base import AccessTokens, Delivery, TransportBase


class _StagedSMTP(smtplib.SMTP):
    """Remembers whether sendmail is in the envelope (MAIL, RCPT) or the data, for the report, and
    connects to the address the guard checked (`pinned`), while TLS checks the host name."""

    stage = "envelope"
    pinned: str | None = None
    deadline: float | None = None  # time.monotonic() by which the whole conversation must be over

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return super()._get_socket(self.pinned or host, port, self._left(timeout))  # type: ignore[misc]  # private in typeshed

    def _left(self, step: float) -> float:
        """Each step waits at most its own timeout, and never past the deadline."""
        if self.deadline is None:
            return step
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the send's deadline passed")
        return min(step, left)

    def send(self, s: Buffer | str) -> None:
        if self.sock is not None:
            self.sock.settimeout(self._left(self.timeout))
        super().send(s)

    def getreply(self) -> tuple[int, bytes]:
        if self.sock is not None:
            self.sock.settimeout(self._left(self.timeout))
        return super().getreply()

    def mail(self, sender: str, options: Sequence[str] = ()) -> tuple[int, bytes]:
        self.stage = "envelope"
        return super().mail(sender, options)

    def data(self, msg: Buffer | str) -> tuple[int, bytes]:
        self.stage = "data"
        return super().data(msg)


class _StagedSMTP_SSL(_StagedSMTP, smtplib.SMTP_SSL):
    pass


Refused = dict[str, tuple[int, bytes]]  # what sendmail returns: the recipients refused, with the replies
_LINE_START_DOT = re.compile(rb"(?m)^\.")


class _PipelinedTransaction:
    """One message as one pipelined group (RFC 2920): MAIL FROM, every RCPT TO and DATA in one write;
    with CHUNKING (RFC 3030) `BDAT <size> LAST` and the message itself instead of DATA, so the
    whole message is one write and one round trip. Without CHUNKING the dot-stuffed content follows
    DATA's 354 as a second write.

    The replies are read in the order of the commands and judged as smtplib's sendmail judges them,
    raising the exceptions it raises (SMTPSenderRefused, SMTPRecipientsRefused, SMTPDataError,
    SMTPServerDisconnected from the reads), so classify_smtp_error reports both paths alike. After a
    refusal the replies still due are read and the transaction is reset, as sendmail does, so the
    connection serves the next message of the batch."""

    def __init__(self, conn: _StagedSMTP, sender: str, recipients: Sequence[str], content: bytes) -> None:
        self.conn = conn
        self.sender = sender
        self.recipients = list(recipients)
        self.content = content
        self.chunking = conn.has_extn("chunking")

    def run(self) -> Refused:
        """Send the message; returns the recipients refused while others were accepted."""
        self.conn.stage = "envelope"
        self.conn.send(self._group())
        self._sender_accepted()
        refused = self._recipients_replies()
        self.conn.stage = "data"
        if not self.chunking:
            self._data_accepted()
            self.conn.send(_dot_stuffed(self.content))
        self._content_accepted()
        return refused

    def _group(self) -> bytes:
        """The commands (and with CHUNKING the message) as sendmail words them, encoded before
        anything is written: an address the encoding cannot carry fails with nothing sent."""
        conn = self.conn
        size = f" size={len(self.content)}" if conn.does_esmtp and conn.has_extn("size") else ""
        commands = [_command("mail", f"from:{smtplib.quoteaddr(self.sender)}{size}")]
        commands += [_command("rcpt", f"to:{smtplib.quoteaddr(address)}") for address in self.recipients]
        if not self.chunking:
            return "".join([*commands, _command("data")]).encode(conn.command_encoding)
        body = _ending_in_crlf(self.content)  # the bytes DATA would deliver, without dot-stuffing
        return (
            "".join([*commands, _command("bdat", f"{len(body)} last")]).encode(conn.command_encoding) + body
        )

    def _sender_accepted(self) -> None:
        code, reply = self.conn.getreply()
        if code != 250:
            self._abandon(code, due=len(self.recipients) + 1)  # the RCPTs' and DATA's (or BDAT's)
            raise smtplib.SMTPSenderRefused(code, reply, self.sender)

    def _recipients_replies(self) -> Refused:
        refused: Refused = {}
        for address in self.recipients:
            code, reply = self.conn.getreply()
            if code not in (250, 251):
                refused[address] = (code, reply)
            if code == 421:
                self.conn.close()
                raise smtplib.SMTPRecipientsRefused(refused)
        if len(refused) == len(self.recipients):
            self._abandon(due=1)  # DATA's or BDAT's, refused for want of a recipient
            raise smtplib.SMTPRecipientsRefused(refused)
        return refused

    def _data_accepted(self) -> None:
        code, reply = self.conn.getreply()
        if code != 354:
            self._abandon(code)
            raise smtplib.SMTPDataError(code, reply)

    def _content_accepted(self) -> None:
        code, reply = self.conn.getreply()
        if code != 250:
            self._abandon(code)
            raise smtplib.SMTPDataError(code, reply)

    def _abandon(self, code: int | None = None, *, due: int = 0) -> None:
        """After a refusal (`code`): hang up on a 421 (the server is closing), else read the `due`
        replies to the commands that followed (503 or 554) and RSET; a server already gone is left
        to the next command to report, as sendmail's own reset does."""
        if code == 421:
            self.conn.close()
            return
        try:
            for _ in range(due):
                if self.conn.getreply()[0] == 354:  # DATA taken with no recipient: end it empty
                    self.conn.send(b".\r\n")
                    self.conn.getreply()
        except smtplib.SMTPServerDisconnected:
            return
        self.conn._rset()  # type: ignore[attr-defined]  # private in typeshed; ignores a disconnect


def _command(verb: str, args: str = "") -> str:
    """One command line, as smtplib's putcmd words it and with its check for line breaks."""
    line = f"{verb} {args}" if args else verb
    if "\r" in line or "\n" in line:
        line = line.replace("\n", "\\n").replace("\r", "\\r")
        raise ValueError(f"command and arguments contain prohibited newline characters: {line}")
    return f"{line}\r\n"


def _ending_in_crlf(content: bytes) -> bytes:
    return content if content.endswith(b"\r\n") else content + b"\r\n"


def _dot_stuffed(content: bytes) -> bytes:
    """The content after DATA's 354, as smtplib's data() sends it (RFC 5321 4.5.2)."""
    return _ending_in_crlf(_LINE_START_DOT.sub(b"..", content)) + b".\r\n"


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    security: str  # ssl | starttls | opportunistic | none
    username: str | None = None


class SmtpTransport(TransportBase):
    def __init__(
        self,
        server: SmtpServer,
        password: str | None,
        *,
        timeout: float = 15.0,
        extra_ca_bundle: str | None = None,
        from_email: str | None = None,
        oauth: AccessTokens | None = None,
        guard: AddressGuard | None = None,
        deadline: float | None = None,
        pipelining: bool = True,
    ) -> None:
        self.server = server
        self.pipelining = pipelining  # False: one command and one reply at a time, even if offered
        self._password = password
        self.oauth = oauth  # sign in with AUTH XOAUTH2 and this account's access tokens
        self.guard = guard or AddressGuard()  # internal addresses refused unless admitted
        self.deadline = deadline  # time.monotonic() by which a send must be over (None: per step only)
        self._secrets: list[str] = [password] if password else []  # never echoed back (scrub)
        self.timeout = timeout
        self.extra_ca_bundle = extra_ca_bundle
        self.context = ServerContext(
            host=server.host,
            port=server.port,
            security=server.security,
            username=server.username,
            from_email=from_email,
        )
        self._conn: _StagedSMTP | None = None

    def __repr__(self) -> str:
        return f"SmtpTransport({self.server!r})"

    def open(self) -> None:
        if self._conn is not None:
            return
        stage = "connect"
        conn: _StagedSMTP | None = None
        try:
            tls = client_context(self.extra_ca_bundle)
            conn = self._connect(tls)
            # A message is several writes (TLS records); with Nagle's algorithm the last one waits for
            # the server's delayed ACK (40 ms on Linux) whenever the connection sat idle between sends.
            assert conn.sock is not None  # the constructor connected
            conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.ehlo_or_helo_if_needed()
            if self.server.security in ("starttls", "opportunistic"):
                if conn.has_extn("starttls"):
                    stage = "tls"
                    conn.starttls(context=tls)
                    conn.ehlo()
                elif self.server.security == "starttls" or self.server.username:
                    raise DeliveryFailed(starttls_unavailable(self.context))
            if self.server.username:
                if self.server.security == "none":
                    raise DeliveryFailed(insecure_auth_refused(self.context))
                stage = "auth"
                self._sign_in(conn)
        except DeliveryFailed:
            _quietly_close(conn)
            raise
        except Exception as exc:
            _quietly_close(conn)
            raise DeliveryFailed(self._classified(exc, stage)) from exc
        self._conn = conn

    def _connect(self, tls: ssl.SSLContext) -> _StagedSMTP:
        """Connect to an address the guard checked; the host name stays what TLS verifies."""
        try:
            address = self.guard.resolve(self.server.host, self.server.port)
        except AddressNotAllowed as exc:
            raise DeliveryFailed(address_not_allowed(self.server.host, exc.address)) from None
        except HostNotFound:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        conn: _StagedSMTP
        if self.server.security == "ssl":
            conn = _StagedSMTP_SSL(timeout=self.timeout, context=tls)
        else:
            conn = _StagedSMTP(timeout=self.timeout)
        conn.pinned = address
        conn.deadline = self.deadline
        conn._host = self.server.host  # type: ignore[attr-defined]  # what starttls and SSL check
        code, greeting = conn.connect(self.server.host, self.server.port)
        if code != 220:  # what smtplib's constructor does when it connects itself
            conn.close()
            raise smtplib.SMTPConnectError(code, greeting)
        return conn

    def _classified(self, exc: BaseException, stage: str) -> Failure:
        return scrub(classify_smtp_error(exc, stage, self.context), self._secrets, self.server.username)

    def _sign_in(self, conn: _StagedSMTP) -> None:
        assert self.server.username
        if self.oauth is None:
            conn.login(self.server.username, self._password or "")
            return
        if "XOAUTH2" not in conn.esmtp_features.get("auth", "").upper().split():
            raise smtplib.SMTPNotSupportedError("AUTH XOAUTH2 not offered")
        try:
            _xoauth2(conn, self.server.username, self._token(refresh=False))
        except smtplib.SMTPAuthenticationError:  # an access token may be refused early: renew once
            try:
                _xoauth2(conn, self.server.username, self._token(refresh=True))
            except smtplib.SMTPAuthenticationError as exc:
                failure = xoauth2_refused(exc, self.context)
                raise DeliveryFailed(scrub(failure, self._secrets, self.server.username)) from None

    def _token(self, *, refresh: bool) -> str:
        assert self.oauth is not None
        token = self.oauth.access_token(refresh=refresh)
        self._secrets.append(token)
        return token

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            if self._pipelined(conn):
                conn.putcmd("quit")  # its reply would tell nothing: not worth a round trip
            else:
                conn.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            _quietly_close(conn)

    def send(self, message: OutgoingMessage) -> Delivery:
        if self._conn is None:
            self.open()
        assert self._conn is not None
        try:
            refused = self._deliver(self._conn, message)
        except Exception as exc:
            failure = self._classified(exc, getattr(self._conn, "stage", "data"))
            if failure.category in ("connection_lost", "timeout"):
                self._drop()
            raise DeliveryFailed(failure) from exc
        return Delivery(
            message_id=message.message_id,
            refused={addr: f"{code} {_text(msg)}" for addr, (code, msg) in refused.items()},
            server_size=_advertised_size(self._conn),
        )

    def _deliver(self, conn: _StagedSMTP, message: OutgoingMessage) -> Refused:
        recipients = list(message.recipients)
        if self._pipelined(conn):
            return _PipelinedTransaction(conn, message.envelope_from, recipients, message.as_bytes()).run()
        return conn.sendmail(message.envelope_from, recipients, message.as_bytes())

    def _pipelined(self, conn: _StagedSMTP) -> bool:
        """Pipelining is used when asked for and offered in the EHLO after STARTTLS and AUTH."""
        return self.pipelining and conn.has_extn("pipelining")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        _quietly_close(conn)


def _advertised_size(conn: smtplib.SMTP | None) -> int | None:
    """The server's EHLO SIZE (RFC 1870): 0 for no fixed limit, None when it advertises none."""
    size = conn.esmtp_features.get("size", "").strip() if conn is not None else ""
    return int(size) if size.isdigit() else None


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _quietly_close(conn: smtplib.SMTP | None) -> None:
    if conn is not None:
        try:
            conn.close()
        except OSError:
            pass


__all__ = ["Delivery", "Failure", "SmtpServer", "SmtpTransport"]


def _xoauth2(conn: smtplib.SMTP, user: str, token: str) -> None:
    """AUTH XOAUTH2 (Google's and Microsoft's SASL mechanism). After a refusal the server sends a
    334 with a JSON error; the client answers with an empty line and gets the final 535."""
    sasl = f"user={user}\x01auth=Bearer {token}\x01\x01"
    conn.auth("XOAUTH2", lambda challenge=None: sasl if challenge is None else "", initial_response_ok=True)


def xoauth2_refused(exc: smtplib.SMTPAuthenticationError, context: ServerContext) -> Failure:
    text = (
        exc.smtp_error.decode("utf-8", "replace")
        if isinstance(exc.smtp_error, bytes)
        else str(exc.smtp_error)
    )
    microsoft = "office365" in context.host or "outlook" in context.host
    hint = (
        "The mailbox refused a valid Microsoft 365 sign-in. SMTP AUTH is probably turned off for it: in "
        "the Microsoft 365 admin center open the user, Mail > Manage email apps, tick Authenticated "
        "SMTP (or use the Graph connection, transport api, which needs no SMTP AUTH)."
        if microsoft
        else "The server refused the connected account's sign-in; connect the account again."
    )
    return Failure(
        stage="auth",
        category="auth_failed",
        transient=False,
        smtp_code=exc.smtp_code,
        server_message=" ".join(text.split())[:512] or None,
        hint=hint,
    )
