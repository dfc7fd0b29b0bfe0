"""Loopback TCP servers that misbehave below SMTP, where aiosmtpd cannot be made to.

Each one is a context manager: leaving it closes the listening socket, every accepted
connection and joins its thread, so the transport tests can check that nothing is left behind.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from types import TracebackType


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
