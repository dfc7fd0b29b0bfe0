"""A real SMTP server on loopback (aiosmtpd): plain, STARTTLS or implicit TLS, with AUTH.

The local stack keeps each message as an .eml file; tests read `messages` to see what a
recipient's server received, envelope included.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

Mode = Literal["plain", "starttls", "ssl"]


@dataclass(frozen=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    tls: bool
    auth_user: str | None
    path: Path | None = None

    def parsed(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


class RecordingHandler:
    """Accepts every message, keeps it, and writes it to `mail_dir` when one is set."""

    def __init__(
        self, mail_dir: Path | None = None, on_message: Callable[[ReceivedMessage], None] | None = None
    ) -> None:
        self.mail_dir = mail_dir
        self.on_message = on_message
        self.messages: list[ReceivedMessage] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data = envelope.original_content or envelope.content
        path = None
        if self.mail_dir is not None:
            self.mail_dir.mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            path = self.mail_dir / f"{stamp}.eml"
            path.write_bytes(data)
        auth = session.auth_data
        received = ReceivedMessage(
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            tls=server.transport.get_extra_info("ssl_object") is not None,
            auth_user=auth.login.decode() if isinstance(auth, LoginPassword) else None,
            path=path,
        )
        with self._lock:
            self.messages.append(received)
        if self.on_message:
            self.on_message(received)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _authenticator(users: dict[str, str]) -> Callable[..., AuthResult]:
    def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode("utf-8", "replace")
            password = auth_data.password.decode("utf-8", "replace")
            if users.get(login) == password:
                return AuthResult(success=True, auth_data=auth_data)
        return AuthResult(
            success=False, handled=False, message="535 5.7.8 Authentication credentials invalid"
        )

    return authenticate


@dataclass
class LocalSmtpServer:
    """Start with `start()` or as a context manager; `port` is chosen when 0."""

    mode: Mode = "plain"
    host: str = "127.0.0.1"
    port: int = 0
    server_context: ssl.SSLContext | None = None
    users: dict[str, str] | None = None
    handler: Any = None
    mail_dir: Path | None = None
    data_size_limit: int | None = 33_554_432
    auth_require_tls: bool = True
    on_message: Callable[[ReceivedMessage], None] | None = None
    smtp_options: dict[str, Any] = field(default_factory=dict)
    _controller: Controller | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.handler is None:
            self.handler = RecordingHandler(self.mail_dir, self.on_message)
        if self.port == 0:
            self.port = free_port()
        if self.mode != "plain" and self.server_context is None:
            raise ValueError("TLS modes need a server_context")

    @property
    def messages(self) -> list[ReceivedMessage]:
        return self.handler.messages

    def start(self) -> LocalSmtpServer:
        options: dict[str, Any] = {"data_size_limit": self.data_size_limit, **self.smtp_options}
        if self.users is not None:
            options.update(
                authenticator=_authenticator(self.users),
                auth_required=False,
                # aiosmtpd counts only STARTTLS as TLS; an implicit-TLS session is encrypted anyway.
                auth_require_tls=self.auth_require_tls and self.mode == "starttls",
            )
        if self.mode == "starttls":
            options.update(tls_context=self.server_context, require_starttls=False)
        controller = Controller(
            self.handler,
            hostname=self.host,
            port=self.port,
            ssl_context=self.server_context if self.mode == "ssl" else None,
            ready_timeout=10,
            **options,
        )
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            with contextlib.suppress(Exception):
                controller.stop()

    def __enter__(self) -> LocalSmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def quiet_aiosmtpd() -> None:
    """aiosmtpd logs every session at INFO; the local stack prints its own line per message."""
    logging.getLogger("mail.log").setLevel(logging.WARNING)
