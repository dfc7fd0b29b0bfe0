"""The project's exception root and its subclasses.

Every failure the API can report is one of these; `mailer.api` maps them to
HTTP problem responses in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


class MailerError(Exception):
    """Root of every error this project raises on purpose."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str, *, errors: list[FieldError] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []

    def extra(self) -> dict[str, Any]:
        """Members added to the problem document besides type/title/status/detail/errors."""
        return {}

    def headers(self) -> dict[str, str]:
        """Response headers the problem carries (Retry-After, for one)."""
        return {}


class InvalidInput(MailerError):
    status = 422
    title = "Invalid request"

    @classmethod
    def on(cls, field_name: str, message: str) -> InvalidInput:
        return cls(f"{field_name}: {message}", errors=[FieldError(field_name, message)])


class BadRequest(MailerError):
    status = 400
    title = "Bad request"


class Unauthenticated(MailerError):
    status = 401
    title = "Not signed in"


class Forbidden(MailerError):
    status = 403
    title = "Forbidden"


class NotFound(MailerError):
    status = 404
    title = "Not found"


class Conflict(MailerError):
    status = 409
    title = "Conflict"


class Gone(MailerError):
    status = 410
    title = "No longer available"


class PayloadTooLarge(MailerError):
    status = 413
    title = "Attachments too large"


class TooManyRequests(MailerError):
    """A sending budget is used up: nothing was sent; the same request may succeed after `retry_after`."""

    status = 429
    title = "Sending limit reached"

    def __init__(self, detail: str, *, limit: str, retry_after: int) -> None:
        super().__init__(detail)
        self.limit = limit
        self.retry_after = max(1, retry_after)

    def extra(self) -> dict[str, Any]:
        return {"limit": self.limit, "retry_after": self.retry_after}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(MailerError):
    """An AWS dependency failed or throttled; the request may be retried."""

    status = 503
    title = "Service temporarily unavailable"
