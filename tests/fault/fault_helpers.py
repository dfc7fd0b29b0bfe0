"""Helpers of the fault suite: SMTP servers that fail first and then behave, leak checks, AWS errors.

The misbehaving servers are those of tests/integration (misbehaving_smtp); tests/fault/conftest.py
puts that folder on sys.path, as pytest does when it collects it.
"""

from __future__ import annotations

import gc
import selectors
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import botocore.client
import pytest
from botocore.exceptions import ClientError
from misbehaving_smtp import Script

PROBLEM_JSON = "application/problem+json"


# --- SMTP: a server that misbehaves on its first connections, then relays to a real one ----------


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


# --- nothing left behind --------------------------------------------------------------------------


def settle(probe: Callable[[], int], expected: int, seconds: float = 3.0) -> int:
    """Threads and sockets close asynchronously: wait a little for the count to come back."""
    deadline = time.monotonic() + seconds
    value = probe()
    while value != expected and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.02)
        value = probe()
    return value


@contextmanager
def no_leaks() -> Iterator[list[str]]:
    """Fails the block when it leaves a thread running or a socket for the garbage collector to close.

    Yields the list of ResourceWarnings (filled on exit) so a caller can show them.
    """
    baseline = threading.active_count()
    unclosed: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield unclosed
        gc.collect()
    unclosed += [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning) and "socket" in str(w.message).lower()
    ]
    assert unclosed == [], unclosed
    assert settle(threading.active_count, baseline) == baseline, threading.enumerate()


# --- AWS: real error codes from the client layer ------------------------------------------------------


Matcher = Callable[[str, str, dict[str, Any]], bool]


class AwsFaults:
    """Makes chosen AWS calls fail with a real error code, below every store and Powertools.

    Patched at BaseClient._make_api_call, so boto3 resources (Table.get_item), plain clients and
    Powertools' SecretsProvider all meet it; botocore's own retries are inside that method, so a
    fault is one ClientError, immediately.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._rules: list[tuple[Matcher, str, int]] = []
        self.calls: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str]] = []
        original = botocore.client.BaseClient._make_api_call
        faults = self

        def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            service = client.meta.service_model.service_name
            faults.calls.append((service, operation))
            for matches, code, status in faults._rules:
                if matches(service, operation, params):
                    faults.failed.append((service, operation))
                    raise ClientError(
                        {
                            "Error": {"Code": code, "Message": f"injected {code}"},
                            "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "fault-injected"},
                        },
                        operation,
                    )
            return original(client, operation, params)

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", make_api_call)

    def fail(
        self,
        service: str,
        code: str,
        *,
        operations: tuple[str, ...] = (),
        when: Matcher | None = None,
        status: int = 400,
    ) -> None:
        def matches(svc: str, operation: str, params: dict[str, Any]) -> bool:
            return (
                svc == service
                and (not operations or operation in operations)
                and (when is None or when(svc, operation, params))
            )

        self._rules.append((matches, code, status))

    def clear(self) -> None:
        self._rules.clear()
