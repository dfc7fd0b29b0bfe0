"""The exception of wording over a bound, apart from jinja2, so that the API can map it to a 422
without importing the template engine at every cold start."""

from __future__ import annotations


class TemplateLimitExceeded(Exception):
    """Filling the wording in went over one of the bounds of BoundedSandbox.

    Not a MailerError on purpose: the outbox worker takes a MailerError raised while composing for
    settings or a photo that could not be read, gives its claim back and lets SQS deliver the
    message again, while wording over a bound fails the same way every time (a permanent
    template_error, reported once). The API answers it with a 422 naming the field (mailer.api);
    the save-time check turns it into InvalidInput.
    """

    def __init__(self, message: str, field: str = "template") -> None:
        super().__init__(message)
        self.message = message
        self.field = field  # set by the engine to the field being rendered

    @property
    def detail(self) -> str:
        return f"{self.field}: {self.message}"
