"""Test account settings: send a real message and say exactly what went wrong and how to fix it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any

from pydantic import BaseModel

from mailer.config import MailerConfig
from mailer.dal.sent_log_table import SentLogStore
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.message import Sender, build_message
from mailer.delivery.transports.base import Delivery
from mailer.errors import Forbidden, InvalidInput, MailerError
from mailer.identity import Caller
from mailer.ids import utc_now
from mailer.sent_log.models import SentLogEntry
from mailer.settings.models import Profile, TestUnsavedInput
from mailer.settings.sending import deliver
from mailer.settings.service import SendingProfile, SettingsService


class AccountTestResult(BaseModel):
    ok: bool
    to: str
    email_id: str | None = None
    message_id: str | None = None
    elapsed_ms: int
    stage: str | None = None
    category: str | None = None
    smtp_code: int | None = None
    server_message: str | None = None
    hint: str | None = None
    transient: bool | None = None
    refused: dict[str, str] | None = None


def recipient_for_test(caller: Caller, profile_name: str | None, to: str | None) -> str:
    """Default to the caller; non-admins may test the company account only towards themselves."""
    recipient = to or caller.email
    if not recipient:
        raise InvalidInput.on("to", "required: your account has no email address to send the test to")
    if (
        profile_name in ("company", None)  # the company account, or settings not saved (any server)
        and not caller.is_admin
        and recipient.casefold() != (caller.email or "").casefold()
    ):
        raise Forbidden("Only an administrator can send this test message to another address than yours.")
    return recipient


def _describe(profile: SendingProfile) -> list[tuple[str, str]]:
    s = profile.settings
    if s.transport == "ses":
        return [("Service", "Amazon SES"), ("Region", s.ses_region or "default"), ("From", s.from_email)]
    return [
        ("Server", f"{s.host}:{s.port}"),
        ("Security", s.security or ""),
        ("Signed in as", s.username or "(no sign-in)"),
        ("From", s.from_email),
    ]


def build_test_message(profile: SendingProfile, to: str, now: datetime) -> Any:
    s = profile.settings
    rows = _describe(profile)
    when = now.strftime("%Y-%m-%d %H:%M UTC")
    text = (
        "This is a test message.\n\n"
        "If you can read it, the email settings below work and your documents and reminders "
        "can be sent with them.\n\n"
        + "\n".join(f"{label}: {value}" for label, value in rows)
        + f"\nSent: {when}\n\n"
        "If it landed in spam or junk, mark it as not spam so later mail arrives in the inbox.\n"
    )
    html = (
        "<p>This is a test message.</p><p>If you can read it, the email settings below work and your "
        "documents and reminders can be sent with them.</p><table>"
        + "".join(f"<tr><th align='left'>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
        + f"<tr><th align='left'>Sent</th><td>{escape(when)}</td></tr></table>"
        "<p>If it landed in spam or junk, mark it as not spam so later mail arrives in the inbox.</p>"
    )
    return build_message(
        sender=Sender(s.from_email, s.from_name, s.reply_to),
        to=[to],
        subject="Test message: your email settings work",
        text=text,
        html=html,
        now=now,
    )


@dataclass
class AccountTest:
    """Test account settings, saved or not yet saved: a real message, and a report of what failed."""

    config: MailerConfig
    settings: SettingsService
    sent_log: SentLogStore
    logger: Any

    def saved(self, caller: Caller, profile: Profile, to: str | None) -> AccountTestResult:
        recipient = recipient_for_test(caller, profile, to)
        return self.run(caller, self.settings.saved_profile(caller, profile), recipient)

    def unsaved(self, caller: Caller, body: TestUnsavedInput) -> AccountTestResult:
        recipient = recipient_for_test(caller, None, body.to)
        return self.run(caller, self.settings.unsaved_profile(caller, body, body.profile), recipient)

    def run(self, caller: Caller, profile: SendingProfile, to: str) -> AccountTestResult:
        started_at = utc_now()
        start = time.monotonic()
        message = build_test_message(profile, to, datetime.now(UTC))
        delivery: Delivery | None = None
        failure: Failure | None = None
        try:
            delivery = deliver(
                profile,
                message,
                self.config,
                time.monotonic() + self.config.send_deadline_seconds,
                self.settings.budgets,
            )
        except DeliveryFailed as exc:
            failure = exc.failure
        elapsed_ms = int((time.monotonic() - start) * 1000)
        entry = SentLogEntry.attempt(
            kind="test",
            delivery=delivery,
            failure=failure,
            created_at=started_at,
            from_=profile.settings.from_email,
            to=[to],
            subject=str(message.message["Subject"]),
            profile=profile.settings.profile,
        )
        email_id = self._record(caller, entry)
        if failure:
            self.logger.info(
                "test send failed",
                extra={"category": failure.category, "stage": failure.stage, "smtp_code": failure.smtp_code},
            )
            return AccountTestResult(
                ok=False, to=to, email_id=email_id, elapsed_ms=elapsed_ms, **failure.as_dict()
            )
        return AccountTestResult(
            ok=True,
            to=to,
            email_id=email_id,
            message_id=entry.message_id,
            elapsed_ms=elapsed_ms,
            refused=entry.refused or None,
        )

    def _record(self, caller: Caller, entry: SentLogEntry) -> str | None:
        """The entry's id, or None when the sent log could not be written (the test still answers)."""
        try:
            self.sent_log.put(caller.tenant_id, entry)
        except MailerError:
            self.logger.warning("sent log write failed for a test message", extra={"email_id": entry.id})
            return None
        return entry.id
