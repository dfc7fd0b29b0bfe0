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
from collections.abc import Iterable, Iterator, Sequence
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
from mailer.delivery.message import OutgoingMessage, WireBytes
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
        if not isinstance(msg, WireBytes):
            return super().data(msg)
        # smtplib's data(), writing the content piece by piece: smtplib's own copies the whole message
        # twice (dot-stuffing, then the ending) before its one write.
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        for chunk in _dot_stuffed(msg):
            self.send(chunk)
        return self.getreply()


class _StagedSMTP_SSL(_StagedSMTP, smtplib.SMTP_SSL):
    pass


Refused = dict[str, tuple[int, bytes]]  # what sendmail returns: the recipients refused, with the replies
_DOT_AFTER_LF = re.compile(rb"\n\.")
_WRITE = 256 * 1024  # bytes in one write at most: a large message goes in slices, never copied whole


class _PipelinedTransaction:
    """One message as one pipelined group (RFC 2920): MAIL FROM, every RCPT TO and DATA in one write;
    with CHUNKING (RFC 3030) `BDAT <size> LAST` and the message itself instead of DATA, so the
    whole message is one flight (one write; a large message in 256 KB writes that follow one another
    with no reply awaited) and one round trip. Without CHUNKING the dot-stuffed content follows
    DATA's 354.

    The replies are read in the order of the commands and judged as smtplib's sendmail judges them,
    raising the exceptions it raises (SMTPSenderRefused, SMTPRecipientsRefused, SMTPDataError,
    SMTPServerDisconnected from the reads), so classify_smtp_error reports both paths alike. After a
    refusal the replies still due are read and the transaction is reset, as sendmail does, so the
    connection serves the next message of the batch."""

    def __init__(self, conn: _StagedSMTP, sender: str, recipients: Sequence[str], content: WireBytes) -> None:
        self.conn = conn
        self.sender = sender
        self.recipients = list(recipients)
        self.content = content
        self.chunking = conn.has_extn("chunking")

    def run(self) -> Refused:
        """Send the message; returns the recipients refused while others were accepted."""
        self.conn.stage = "envelope"
        for chunk in self._group():
            self.conn.send(chunk)
        self._sender_accepted()
        refused = self._recipients_replies()
        self.conn.stage = "data"
        if not self.chunking:
            self._data_accepted()
            for chunk in _dot_stuffed(self.content):
                self.conn.send(chunk)
        self._content_accepted()
        return refused

    def _group(self) -> Iterator[Buffer]:
        """The commands (and with CHUNKING the message) as sendmail words them, as writes that go
        one after another with no reply awaited (one write unless the message is large), encoded
        before anything is written: an address the encoding cannot carry fails with nothing sent."""
        conn = self.conn
        size = f" size={len(self.content)}" if conn.does_esmtp and conn.has_extn("size") else ""
        commands = [_command("mail", f"from:{smtplib.quoteaddr(self.sender)}{size}")]
        commands += [_command("rcpt", f"to:{smtplib.quoteaddr(address)}") for address in self.recipients]
        if not self.chunking:
            return iter(["".join([*commands, _command("data")]).encode(conn.command_encoding)])
        # the bytes DATA would deliver, without dot-stuffing: the content, ending in CRLF
        ending = [] if _ends_in_crlf(self.content) else [b"\r\n"]
        bdat = _command("bdat", f"{len(self.content) + 2 * len(ending)} last")
        head = "".join([*commands, bdat]).encode(conn.command_encoding)
        return _writes([head, *self.content, *ending])

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


def _ends_in_crlf(content: WireBytes) -> bool:
    tail = b""
    for piece in reversed(content.pieces):
        tail = bytes(memoryview(piece)[-2:]) + tail
        if len(tail) >= 2:
            break
    return tail[-2:] == b"\r\n"


def _writes(pieces: Iterable[Buffer]) -> Iterator[Buffer]:
    """The pieces as writes of at most _WRITE bytes: small pieces joined, large ones sliced."""
    pending: list[Buffer] = []
    size = 0
    for piece in pieces:
        view = memoryview(piece)
        for start in range(0, view.nbytes, _WRITE):
            chunk = view[start : start + _WRITE]
            if pending and size + chunk.nbytes > _WRITE:
                yield _joined(pending)
                pending, size = [], 0
            pending.append(chunk)
            size += chunk.nbytes
    if pending:
        yield _joined(pending)


def _joined(chunks: list[Buffer]) -> Buffer:
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _dot_stuffed(content: WireBytes) -> Iterator[Buffer]:
    """The content after DATA's 354 as smtplib's data() sends it (RFC 5321 4.5.2: a dot that starts
    a line doubled, CRLF at the end if missing, then . CRLF), in writes of at most ~_WRITE bytes."""
    line_start, tail, held = True, b"", None
    for chunk in _writes(content):
        view = memoryview(chunk)
        leading = line_start and view[:1] == b"."
        if leading or _DOT_AFTER_LF.search(view):
            chunk = _DOT_AFTER_LF.sub(b"\n..", view)
            chunk = b"." + chunk if leading else chunk
        tail = (tail + bytes(view[-2:]))[-2:]
        line_start = tail.endswith(b"\n")
        if held is not None:
            yield held
        held = chunk
    end = b".\r\n" if tail == b"\r\n" else b"\r\n.\r\n"
    yield end if held is None else _joined([held, end])


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
        content = message.wire()  # in pieces: the message is never joined into one more copy
        if self._pipelined(conn):
            return _PipelinedTransaction(conn, message.envelope_from, recipients, content).run()
        return conn.sendmail(message.envelope_from, recipients, content)

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
