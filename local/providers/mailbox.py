"""What the local providers keep of every message they accepted, and the sender checks they share."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses


@dataclass(frozen=True)
class DeliveredMessage:
    """A message a provider accepted for delivery: the bytes as received and the parsed message."""

    id: str
    raw: bytes
    message: EmailMessage
    account: str  # the mailbox it was sent from (the token's account, or the mailbox an app token named)
    via: str  # graph.sendMail, graph.draft, gmail.send, gmail.upload, smtp
    recipients: tuple[str, ...]
    mail_from: str | None = None  # the SMTP envelope sender, for SMTP only
    auth_user: str | None = None
    tls: bool = True
    received_at: float = field(default_factory=time.time)

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def from_addresses(self) -> list[str]:
        return sender_addresses(self.message)


class Mailbox:
    """Thread-safe lists of accepted messages: everything delivered, and a Sent Items folder."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._delivered: list[DeliveredMessage] = []
        self._sent_items: list[DeliveredMessage] = []
        self._listeners: list[Callable[[DeliveredMessage], None]] = []

    def subscribe(self, listener: Callable[[DeliveredMessage], None]) -> None:
        """Call `listener` with every message accepted from now on (the local stack shows them)."""
        self._listeners.append(listener)

    def deliver(self, message: DeliveredMessage, *, save_to_sent_items: bool = True) -> None:
        for listener in self._listeners:
            listener(message)
        with self._lock:
            self._delivered.append(message)
            if save_to_sent_items:
                self._sent_items.append(message)

    @property
    def delivered(self) -> list[DeliveredMessage]:
        with self._lock:
            return list(self._delivered)

    @property
    def sent_items(self) -> list[DeliveredMessage]:
        with self._lock:
            return list(self._sent_items)

    def clear(self) -> None:
        with self._lock:
            self._delivered.clear()
            self._sent_items.clear()


def parse(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=policy.default)  # type: ignore[return-value]


def _addresses(message: EmailMessage, *names: str) -> list[str]:
    values: list[str] = []
    for name in names:
        values.extend(str(value) for value in message.get_all(name, []))
    return [address for _, address in getaddresses(values) if address]


def sender_addresses(message: EmailMessage) -> list[str]:
    """The addresses of the From and Sender headers: the ones a provider checks send-as rights on."""
    return _addresses(message, "From", "Sender")


def header_recipients(message: EmailMessage) -> tuple[str, ...]:
    return tuple(_addresses(message, "To", "Cc", "Bcc"))


def may_send_as(address: str, account: str | None, aliases: Iterable[str]) -> bool:
    allowed = {a.lower() for a in aliases}
    if account:
        allowed.add(account.lower())
    return address.lower() in allowed


def message_id(prefix: str = "") -> str:
    return prefix + secrets.token_hex(8)
