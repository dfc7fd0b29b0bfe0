"""SMTP servers for tests on 127.0.0.1.

aiosmtpd servers (local.smtp_server.LocalSmtpServer) play the well-behaved and the refusing ones,
with `ScriptedHandler` answering MAIL/RCPT/DATA as told. Raw sockets play the servers that misbehave
below SMTP, where aiosmtpd cannot be made to: `SilentListener`, `ScriptedServer` and its scripts.

Each server is a context manager: leaving it closes the listening socket, every accepted connection
and joins its thread, so a test can check that nothing is left behind. `Servers` starts servers for
a fixture and stops every one of them afterwards.
"""

from __future__ import annotations

import selectors
import socket
import ssl
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar

from aiosmtpd.smtp import MISSING

from local.smtp_server import LocalSmtpServer, RecordingHandler

# --- aiosmtpd servers ------------------------------------------------------------------------------


class ScriptedHandler(RecordingHandler):
    """Records messages like the local stack, answers MAIL/RCPT/DATA as told, and notes what it saw.

    `peers` holds the client address of every MAIL FROM: one entry per TCP connection.
    `auth_commands` holds every AUTH command that reached the server.
    """

    def __init__(
        self,
        *,
        mail_reply: str | None = None,
        rcpt_reply: Callable[[str], str | None] | None = None,
        data_reply: str | None = None,
        drop_on_mail: int | None = None,
        offer_auth: bool = True,
    ) -> None:
        super().__init__()
        self.mail_reply = mail_reply
        self.rcpt_reply = rcpt_reply
        self.data_reply = data_reply
        self.drop_on_mail = drop_on_mail
        self.offer_auth = offer_auth
        self.mail_commands = 0
        self.peers: set[Any] = set()
        self.auth_commands: list[list[str]] = []

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ):
        session.host_name = hostname
        if self.offer_auth:
            return responses
        return [line for line in responses if not line.upper().startswith("250-AUTH")]

    async def handle_AUTH(self, server: Any, session: Any, envelope: Any, args: list[str]) -> Any:
        self.auth_commands.append(list(args))
        return MISSING  # aiosmtpd goes on with its own AUTH handling

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]):
        self.mail_commands += 1
        self.peers.add(session.peer)
        if self.drop_on_mail == self.mail_commands:
            server.transport.close()
        return self.mail_reply or MISSING

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]):
        reply = self.rcpt_reply(address) if self.rcpt_reply else None
        return reply or MISSING

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.data_reply:
            return self.data_reply
        return await super().handle_DATA(server, session, envelope)


def start_smtp_server(server_tls: ssl.SSLContext, mode: str = "starttls", **options: Any) -> LocalSmtpServer:
    """A real loopback SMTP server; every mode but plain presents the certificate in `server_tls`."""
    if mode != "plain":
        options.setdefault("server_context", server_tls)
    return LocalSmtpServer(mode=mode, **options).start()  # type: ignore[arg-type]


# --- raw sockets that misbehave below SMTP ----------------------------------------------------------


class SilentListener:
    """Listens on 127.0.0.1 and never says a word.

    The kernel completes the TCP handshake for connections in the backlog, so a client
    connects and then waits for a banner that never comes.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=8)
        self.port: int = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


Script = Callable[[socket.socket], None]


class ScriptedServer:
    """Accepts connections on 127.0.0.1 and runs `script(conn)` on each, one after another.

    The connection is closed after the script returns, so a script that only sends a line
    is a server that answers once and hangs up.
    """

    def __init__(self, script: Script) -> None:
        self.script = script
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=8)
        self.sock.settimeout(0.05)
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"scripted-smtp-{self.port}", daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                self.connections += 1
                conn.settimeout(2.0)
                try:
                    self.script(conn)
                except OSError:
                    pass

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        self.sock.close()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def banner(line: str) -> Script:
    """A server that greets with `line` (for example a 421) and closes the connection."""

    def script(conn: socket.socket) -> None:
        conn.sendall(line.encode("ascii") + b"\r\n")

    return script


def _line(conn: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\r\n"):
        chunk = conn.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def stall(conn: socket.socket) -> None:
    """Accept and say nothing: the client waits for the banner until its own timeout, then hangs up."""
    conn.settimeout(5.0)
    conn.recv(1)


def close_during_tls_handshake(conn: socket.socket) -> None:
    """Offer STARTTLS, accept it, read the ClientHello and hang up before answering it.

    Reading the ClientHello first makes the close an orderly FIN (never a reset), so the client
    always sees the same error: EOF in the middle of the handshake.
    """
    conn.sendall(b"220 mail.flaky.example ESMTP\r\n")
    _line(conn)  # EHLO
    conn.sendall(b"250-mail.flaky.example\r\n250-SIZE 33554432\r\n250 STARTTLS\r\n")
    _line(conn)  # STARTTLS
    conn.sendall(b"220 2.0.0 Ready to start TLS\r\n")
    conn.recv(16384)  # the ClientHello


def relay(conn: socket.socket, port: int, idle_seconds: float = 5.0) -> None:
    """Pass bytes both ways between the client and 127.0.0.1:port until either side closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as upstream:
        conn.setblocking(False)
        upstream.setblocking(False)
        peers = {conn: upstream, upstream: conn}
        with selectors.DefaultSelector() as selector:
            for sock in peers:
                selector.register(sock, selectors.EVENT_READ)
            while True:
                ready = selector.select(timeout=idle_seconds)
                if not ready:
                    return
                for key, _ in ready:
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(65536)
                    except BlockingIOError:
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    peers[source].setblocking(True)
                    peers[source].sendall(data)
                    peers[source].setblocking(False)


def misbehave_then_relay(misbehave: Script, upstream_port: int, times: int = 1) -> Script:
    """The first `times` connections get `misbehave`; every later one is relayed to the real server."""
    seen = 0

    def script(conn: socket.socket) -> None:
        nonlocal seen
        seen += 1
        if seen <= times:
            misbehave(conn)
        else:
            relay(conn, upstream_port)

    return script


# --- servers started for one test -------------------------------------------------------------------


class Stoppable(Protocol):
    def stop(self) -> None: ...


S = TypeVar("S", bound=Stoppable)


class Servers:
    """Keeps every server a test started, to stop them all when it ends (`stop_all`)."""

    def __init__(self) -> None:
        self.started: list[Stoppable] = []

    def keep(self, server: S) -> S:
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()
        self.started.clear()
