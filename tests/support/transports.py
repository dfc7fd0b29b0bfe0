"""Sending without a server: a TransportPool whose connections are the real MemoryTransport.

`MemoryServer` is where they deliver. It keeps the messages accepted, the connections opened (with
the password each signed in with) and the failures to answer next: `fail_next(failure, ...)` makes
the next sends raise DeliveryFailed with those failures, in order, as a server refusing them would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailer.config import MailerConfig
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.message import OutgoingMessage
from mailer.delivery.transports.base import Delivery
from mailer.delivery.transports.memory import MemoryTransport
from mailer.settings.sending import TransportPool
from mailer.settings.service import SendingProfile


class ScriptedTransport(MemoryTransport):
    """A MemoryTransport that answers its server's scripted failures before accepting anything."""

    def __init__(self, server: MemoryServer, password: str | None) -> None:
        super().__init__()
        self.server = server
        self.password = password
        self.closed = False

    def send(self, message: OutgoingMessage) -> Delivery:
        if self.server.failures:
            raise DeliveryFailed(self.server.failures.pop(0))
        return super().send(message)

    def close(self) -> None:
        self.closed = True


@dataclass
class MemoryServer:
    failures: list[Failure] = field(default_factory=list)
    connections: list[ScriptedTransport] = field(default_factory=list)

    def fail_next(self, *failures: Failure) -> None:
        self.failures.extend(failures)

    def connect(self, password: str | None) -> ScriptedTransport:
        transport = ScriptedTransport(self, password)
        transport.open()
        self.connections.append(transport)
        return transport

    @property
    def accepted(self) -> list[OutgoingMessage]:
        return [message for connection in self.connections for message in connection.outbox]

    def to(self, address: str) -> list[OutgoingMessage]:
        """The accepted messages with `address` among their recipients (envelope, so Bcc included)."""
        return [m for m in self.accepted if address in m.recipients]


class MemoryPool(TransportPool):
    """TransportPool that opens its connections on a MemoryServer instead of a mail server.

    Opening reads the profile's password first, as open_authenticated does, so a password that is
    missing or cannot be read fails the send as it would against a server. Everything else (one
    connection per sender for the batch, dropping a broken one, closing at the end) is the real pool's.
    """

    def __init__(self, config: MailerConfig, server: MemoryServer) -> None:
        super().__init__(config)
        self.server = server

    def send(self, sender_key: str, profile: SendingProfile, message: OutgoingMessage) -> Delivery:
        if sender_key not in self._open:
            self._open[sender_key] = self.server.connect(profile.password())
        return super().send(sender_key, profile, message)


def failure(category: str, *, transient: bool, stage: str = "data", smtp_code: int | None = None) -> Failure:
    """A classified failure as a transport reports it."""
    return Failure(
        stage=stage,
        category=category,
        hint=f"{category} ({'transient' if transient else 'permanent'}), from the test's server",
        transient=transient,
        smtp_code=smtp_code,
    )
