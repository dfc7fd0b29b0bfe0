"""What every transport offers: open, close, context-manager use, send and send_messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from mailer.delivery.failures import Failure
from mailer.delivery.message import OutgoingMessage


@dataclass(frozen=True)
class Delivery:
    """A message the server accepted; `refused` lists recipients it refused while accepting others.
    `server_size` is the largest message an SMTP server said it takes (EHLO SIZE, RFC 1870): 0 for no
    limit, None when it said nothing (and for transports that are not SMTP)."""

    message_id: str
    refused: dict[str, str] = field(default_factory=dict)
    server_size: int | None = None


Outcome = Delivery | Failure


class Transport(Protocol):
    def open(self) -> None: ...

    def close(self) -> None: ...

    def send(self, message: OutgoingMessage) -> Delivery:
        """Send one message; raises DeliveryFailed with the classified failure."""
        ...

    def send_messages(self, messages: list[OutgoingMessage]) -> list[Outcome]:
        """Send a batch over one connection; one outcome per message, in order."""
        ...

    def __enter__(self) -> Transport: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class TransportBase:
    """Shared batch and context-manager behaviour; subclasses implement open, close and send."""

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def send(self, message: OutgoingMessage) -> Delivery:
        raise NotImplementedError

    def send_messages(self, messages: list[OutgoingMessage]) -> list[Outcome]:
        from mailer.delivery.failures import DeliveryFailed

        outcomes: list[Outcome] = []
        for index, message in enumerate(messages):
            try:
                outcomes.append(self.send(message))
            except DeliveryFailed as exc:
                outcomes.append(exc.failure)
                if exc.failure.category in ("connection_lost", "timeout"):
                    # The connection is gone: the rest of the batch fails alike and is retried.
                    outcomes.extend(exc.failure for _ in messages[index + 1 :])
                    break
        return outcomes

    def __enter__(self) -> TransportBase:
        self.open()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AccessTokens(Protocol):
    """Where an API transport gets its bearer token (settings.tokens.TokenSource)."""

    @property
    def account(self) -> str: ...

    def access_token(self, *, refresh: bool = False) -> str: ...
