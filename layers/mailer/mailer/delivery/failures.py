"""A classified send failure, and the error that carries it to the API (502)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailer.errors import MailerError


@dataclass(frozen=True)
class Failure:
    """A classified send failure: what failed, where, and how the user fixes it."""

    stage: str
    category: str
    hint: str
    transient: bool
    smtp_code: int | None = None
    server_message: str | None = None
    refused: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "category": self.category,
            "smtp_code": self.smtp_code,
            "server_message": self.server_message,
            "hint": self.hint,
            "transient": self.transient,
        }


class DeliveryFailed(MailerError):
    """The mail server or SES refused or could not be reached."""

    status = 502
    title = "The mail server refused the message"

    def __init__(self, failure: Failure, *, email_id: str | None = None) -> None:
        super().__init__(failure.hint)
        self.failure = failure
        self.email_id = email_id

    def extra(self) -> dict[str, Any]:
        return self.failure.as_dict() | ({"email_id": self.email_id} if self.email_id else {})
