"""A loopback SMTP server offering PIPELINING (RFC 2920) and CHUNKING (RFC 3030, BDAT), which records
how the client's bytes arrived.

aiosmtpd reads commands one line at a time, so pipelined commands work with it as they are; it only
does not say so in its EHLO, and it has no BDAT. `ExtendedSMTP` adds both, and notes every read of a
connection (the bytes one `data_received` brings, after TLS: one TCP read, or the TLS records it
completed) and, for every command, the read its line ended in. `Session.groups()` then tells which
commands arrived together: `[["EHLO"], ["STARTTLS"], ["EHLO"], ["AUTH"], ["MAIL", "RCPT", "BDAT"],
["QUIT"]]` for a pipelined message, `[..., ["MAIL"], ["RCPT"], ["DATA"], ...]` for one command at a
time.

`RefusingHandler` refuses given senders, recipients (550 5.1.1, or 452 4.5.3) and content (554),
and can be slow to answer the content or QUIT.
"""

from __future__ import annotations

import asyncio
import bisect
import threading
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, syntax

from local.smtp_server import LocalSmtpServer, _authenticator
from tests.support.smtp import ScriptedHandler

# --- what reached the server -------------------------------------------------------------------------


@dataclass
class Session:
    """One connection, as the server saw it: its reads, and each command with the read it ended in."""

    peer: Any
    reads: list[bytes] = field(default_factory=list)
    commands: list[tuple[int, str]] = field(default_factory=list)  # (index in reads, command line)
    _ends: list[int] = field(default_factory=list)  # offset after each read, over the connection

    def received(self, data: bytes) -> None:
        self.reads.append(bytes(data))
        self._ends.append((self._ends[-1] if self._ends else 0) + len(data))

    def command(self, line: str, consumed: int) -> None:
        """`consumed`: the bytes of the connection read so far, the command's line included."""
        self.commands.append((bisect.bisect_right(self._ends, consumed - 1), line))

    def verbs(self) -> list[str]:
        return [line.split(" ", 1)[0].upper() for _, line in self.commands]

    def read_with(self, verb: str) -> bytes:
        """The read that brought the first `verb` command, whatever else came in it."""
        return next(self.reads[read] for read, line in self.commands if line.upper().startswith(verb))

    def groups(self) -> list[list[str]]:
        """The command verbs, one list per read that brought commands."""
        grouped: dict[int, list[str]] = {}
        for read, line in self.commands:
            grouped.setdefault(read, []).append(line.split(" ", 1)[0].upper())
        return list(grouped.values())


class WireLog:
    """Every session that sent something, in the order they started (the controller's own probe
    connection, which only reads the banner, is left out)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: list[Session] = []

    def open(self, peer: Any) -> Session:
        session = Session(peer)
        with self._lock:
            self._sessions.append(session)
        return session

    @property
    def sessions(self) -> list[Session]:
        with self._lock:
            return [s for s in self._sessions if s.reads]

    def verbs(self) -> list[str]:
        return [verb for session in self.sessions for verb in session.verbs()]


# --- the protocol ----------------------------------------------------------------------------------


class ExtendedSMTP(SMTP):
    """aiosmtpd's SMTP with PIPELINING and CHUNKING in its EHLO when asked, BDAT, and a WireLog."""

    def __init__(
        self, handler: Any, *, pipelining: bool, chunking: bool, wire: WireLog | None, **options: Any
    ) -> None:
        super().__init__(handler, **options)
        self.extensions = [name for name, on in (("PIPELINING", pipelining), ("CHUNKING", chunking)) if on]
        self.chunking = chunking
        self._wire = wire
        self._session_log: Session | None = None
        self._received = 0
        self._in_ehlo = False
        self._chunks: list[bytes] = []
        self._chunks_size = 0
        if not chunking:
            del self._smtp_methods["BDAT"]  # "500 command not recognized", as aiosmtpd itself answers
        self._smtp_methods = {verb: self._noted(verb, method) for verb, method in self._smtp_methods.items()}

    # recording

    def data_received(self, data: bytes) -> None:
        if self._wire is not None:
            if self._session_log is None:
                self._session_log = self._wire.open(self.session.peer if self.session else None)
            self._session_log.received(data)
        self._received += len(data)
        super().data_received(data)

    def _noted(
        self, verb: str, method: Callable[[str | None], Awaitable[None]]
    ) -> Callable[[str | None], Awaitable[None]]:
        async def noted(arg: str | None) -> None:
            if self._session_log is not None:
                pending = len(self._reader._buffer)  # type: ignore[attr-defined]  # what is not read yet
                self._session_log.command(f"{verb} {arg or ''}".strip(), self._received - pending)
            await method(arg)

        return noted

    # EHLO: the extensions go before its last line

    async def smtp_EHLO(self, hostname: str) -> None:
        self._in_ehlo = True
        try:
            await super().smtp_EHLO(hostname)
        finally:
            self._in_ehlo = False

    async def push(self, status: Any) -> None:
        if self._in_ehlo and isinstance(status, str) and status.startswith("250 "):
            for extension in self.extensions:
                await super().push(f"250-{extension}")
        await super().push(status)

    # BDAT

    def _set_post_data_state(self) -> None:
        super()._set_post_data_state()
        self._chunks = []
        self._chunks_size = 0

    @syntax("BDAT <size> [LAST]", when="chunking")
    async def smtp_BDAT(self, arg: str | None) -> None:
        """A chunk of the message (RFC 3030). The chunk's bytes are read whatever the reply: after a
        refused MAIL or RCPT the client has sent them already, and they are not commands."""
        words = (arg or "").split()
        if (
            not 1 <= len(words) <= 2
            or not words[0].isdigit()
            or [w.upper() for w in words[1:]] not in ([], ["LAST"])
        ):
            await self.push("501 5.5.4 Syntax: BDAT <size> [LAST]")
            return
        size, last = int(words[0]), len(words) == 2
        chunk = await self._reader.readexactly(size)
        assert self.envelope is not None
        if await self.check_helo_needed() or await self.check_auth_needed("BDAT"):
            return
        if not self.envelope.mail_from:
            await self.push("503 5.5.1 Error: need MAIL command")
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        self._chunks_size += size
        if not self.data_size_limit or self._chunks_size <= self.data_size_limit:
            self._chunks.append(chunk)
        if not last:
            await self.push(f"250 2.0.0 {size} octets received")
            return
        if self.data_size_limit and self._chunks_size > self.data_size_limit:
            self._set_post_data_state()
            await self.push("552 Error: Too much mail data")
            return
        content = b"".join(self._chunks)
        self.envelope.original_content = content
        self.envelope.content = content.decode("utf-8", "surrogateescape") if self._decode_data else content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)


class _Controller(Controller):
    def __init__(self, handler: Any, *, extended: dict[str, Any], **options: Any) -> None:
        super().__init__(handler, **options)
        self.extended = extended

    def factory(self) -> ExtendedSMTP:
        return ExtendedSMTP(self.handler, **self.extended, **self.SMTP_kwargs)


@dataclass
class ExtendedSmtpServer(LocalSmtpServer):
    """LocalSmtpServer (STARTTLS, AUTH, trustme certificates, `messages`) offering PIPELINING and
    CHUNKING as asked; `wire` holds what arrived, unless `record` is False (the benchmarks)."""

    mode: Any = "starttls"
    pipelining: bool = True
    chunking: bool = True
    record: bool = True
    wire: WireLog = field(default_factory=WireLog, init=False)

    def __post_init__(self) -> None:
        if self.handler is None:
            self.handler = RefusingHandler()
        super().__post_init__()

    def start(self) -> ExtendedSmtpServer:
        options: dict[str, Any] = {"data_size_limit": self.data_size_limit, **self.smtp_options}
        if self.users is not None:
            options.update(
                authenticator=_authenticator(self.users),
                auth_required=False,
                auth_require_tls=self.auth_require_tls and self.mode == "starttls",
            )
        if self.mode == "starttls":
            options.update(tls_context=self.server_context, require_starttls=False)
        extended = {
            "pipelining": self.pipelining,
            "chunking": self.chunking,
            "wire": self.wire if self.record else None,
        }
        controller = _Controller(
            self.handler,
            extended=extended,
            hostname=self.host,
            port=self.port,
            ssl_context=self.server_context if self.mode == "ssl" else None,
            ready_timeout=10,
            **options,
        )
        controller.start()
        self._controller = controller
        return self


# --- refusals ----------------------------------------------------------------------------------------


class RefusingHandler(ScriptedHandler):
    """ScriptedHandler refusing by address and content, the same way for DATA and BDAT.

    `drop_on_mail` hangs up at that MAIL and handles nothing more; `refused_senders` get 553 at
    MAIL, `refused_recipients` 550 5.1.1 and `busy_recipients` 452 at RCPT, content holding
    `refused_content` 554; `content_delay` and `quit_delay` hold back the reply to the content and
    to QUIT by that many seconds.
    """

    def __init__(
        self,
        *,
        refused_senders: Collection[str] = (),
        refused_recipients: Collection[str] = (),
        busy_recipients: Collection[str] = (),
        refused_content: bytes | None = None,
        content_delay: float = 0.0,
        quit_delay: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.refused_senders = set(refused_senders)
        self.refused_recipients = set(refused_recipients)
        self.busy_recipients = set(busy_recipients)
        self.refused_content = refused_content
        self.content_delay = content_delay
        self.quit_delay = quit_delay

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]):
        status = await super().handle_MAIL(server, session, envelope, address, options)
        if self.drop_on_mail == self.mail_commands:
            # Hung up (ScriptedHandler closed the transport): like aiosmtpd's QUIT, stop the session
            # too, or it would go on with the pipelined commands it has already read.
            server._handler_coroutine.cancel()
        if address in self.refused_senders:
            return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user"
        return status

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]):
        if address in self.refused_recipients:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address in self.busy_recipients:
            return "452 4.5.3 Too many recipients, try again later"
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.content_delay:
            await asyncio.sleep(self.content_delay)
        if self.refused_content is not None and self.refused_content in envelope.original_content:
            return "554 5.7.1 Message refused: content rejected by policy"
        return await super().handle_DATA(server, session, envelope)

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> Any:
        if self.quit_delay:
            await asyncio.sleep(self.quit_delay)
        return MISSING
