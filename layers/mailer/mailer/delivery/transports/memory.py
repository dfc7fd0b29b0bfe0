"""The memory transport: a real transport that keeps an outbox instead of talking to a server."""

from __future__ import annotations

from mailer.delivery.message import OutgoingMessage
from mailer.delivery.transports.base import Delivery, TransportBase


class MemoryTransport(TransportBase):
    """A real transport that keeps an outbox instead of talking to a server."""

    def __init__(self) -> None:
        self.outbox: list[OutgoingMessage] = []
        self.opened = 0

    def open(self) -> None:
        self.opened += 1

    def close(self) -> None:
        pass

    def send(self, message: OutgoingMessage) -> Delivery:
        self.outbox.append(message)
        return Delivery(message_id=message.message_id)
