"""The HTTP plumbing the provider servers share: a threaded loopback server and plain request/reply values.

Each server answers on 127.0.0.1 (or ::1) with an ephemeral port unless told one, optionally over
TLS with a caller's server-side context, and speaks HTTP/1.1 with keep-alive, as the real endpoints do.
Request bodies may come with Content-Length or chunked; a body larger than the server's limit is
read and dropped, then answered by the server's own "too large" reply, so the client sees a proper
HTTP answer instead of a reset connection.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("local.providers")

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_DISCARD_CHUNK = 1 << 16
_IDLE_TIMEOUT = 60.0


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    peer: str
    too_large: bool = False  # the body was over the server's limit and was not kept

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def header(self, name: str, default: str = "") -> str:
        value = self.headers.get(name)
        return default if value is None else str(value)

    @property
    def content_type(self) -> str:
        """The media type alone, lower case: `text/plain; charset=utf-8` -> `text/plain`."""
        return self.header("Content-Type").split(";", 1)[0].strip().lower()

    def bearer(self) -> str | None:
        """The token of an `Authorization: Bearer` header (RFC 6750 §2.1), or None."""
        value = self.header("Authorization").strip()
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return token.strip()

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, payload: Any, headers: Iterable[tuple[str, str]] = ()) -> Reply:
        body = json.dumps(payload).encode()
        return cls(status, body, [("Content-Type", "application/json; charset=utf-8"), *headers])

    @classmethod
    def html(cls, status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> Reply:
        return cls(status, text.encode(), [("Content-Type", "text/html; charset=utf-8"), *headers])

    @classmethod
    def redirect(cls, location: str) -> Reply:
        return cls(302, b"", [("Location", location), ("Cache-Control", "no-store")])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = _IDLE_TIMEOUT  # an idle keep-alive connection lets its thread go
    server: _Server

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.server.app.name, format % args)

    def _read_body(self, limit: int) -> tuple[bytes, bool]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked(limit)
        length = int(self.headers.get("Content-Length") or 0)
        if length <= limit:
            return self.rfile.read(length), False
        remaining = length
        while remaining > 0:
            got = self.rfile.read(min(remaining, _DISCARD_CHUNK))
            if not got:
                break
            remaining -= len(got)
        return b"", True

    def _read_chunked(self, limit: int) -> tuple[bytes, bool]:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self.rfile.readline(1024)
            chunk = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if chunk == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailer fields
                break
            data = self.rfile.read(chunk)
            self.rfile.readline(8)
            size += len(data)
            if size <= limit:
                parts.append(data)
        if size > limit:
            return b"", True
        return b"".join(parts), False

    def _dispatch(self) -> None:
        app = self.server.app
        target = urlsplit(self.path)
        try:
            body, too_large = self._read_body(app.max_request_bytes)
        except (ValueError, OSError):
            self.close_connection = True
            self._send(Reply(400, b"bad request body", [("Content-Type", "text/plain")]))
            return
        request = Request(
            method=self.command,
            path=target.path,
            query=parse_qs(target.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
            peer=str(self.client_address[0]),
            too_large=too_large,
        )
        try:
            reply = app.handle(request)
        except Exception:  # a bug in a fake server must still answer the client
            log.exception("%s failed on %s %s", app.name, self.command, self.path)
            reply = Reply(500, b"internal error in the local provider", [("Content-Type", "text/plain")])
        self._send(reply)

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        names = {name.lower() for name, _ in reply.headers}
        for name, value in reply.headers:
            self.send_header(name, value)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD" and reply.body:
            self.wfile.write(reply.body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: LoopbackHttpServer, tls: ssl.SSLContext | None) -> None:
        self.app = app
        self.tls = tls
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread, never in the accept loop.
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(_IDLE_TIMEOUT)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()  # socketserver closes the plain socket only, which TLS took over


class LoopbackHttpServer:
    """A provider API on loopback. Subclasses implement `handle(request) -> Reply`.

    Start with `start()` or as a context manager; `url` is `http(s)://127.0.0.1:<port>`.
    """

    name = "provider"
    max_request_bytes = 64 * 1024 * 1024

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None):
        if host not in LOOPBACK_HOSTS:
            raise ValueError(f"the local providers listen on loopback only, not {host!r}")
        self.host = "127.0.0.1" if host == "localhost" else host
        self._requested_port = port
        self.ssl_context = ssl_context
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = _Server((self.host, self._requested_port), self, self.ssl_context)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self.name}-http", daemon=True
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is not None:
            with contextlib.suppress(Exception):
                server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"the {self.name} server is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    # --- for subclasses ----------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        raise NotImplementedError


def form_fields(body: bytes) -> dict[str, list[str]]:
    """An application/x-www-form-urlencoded body, every value of every name (RFC 6749 appendix B)."""
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def first(values: Mapping[str, list[str]], name: str) -> str | None:
    got = values.get(name)
    return got[0] if got else None
