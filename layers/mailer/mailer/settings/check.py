"""Test account settings: send a real message and say exactly what went wrong and how to fix it.

The message looks like real mail (a PDF attached, as invoices are sent), and the answer carries the
`checks` besides the send (settings.checks): attachment, size_limit, spf, dmarc and dkim.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from html import escape
from typing import Any, Literal

from pydantic import BaseModel

from mailer.config import MailerConfig
from mailer.dal import ses_identity
from mailer.dal.sent_log_table import SentLogStore
from mailer.delivery.classify.categories import Category
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.message import Attachment, OutgoingMessage, Sender, build_message
from mailer.delivery.providers import PROVIDERS
from mailer.delivery.transports.base import Delivery
from mailer.documents.sample_pdf import sample_invoice
from mailer.errors import Forbidden, InvalidInput, MailerError
from mailer.identity import Caller
from mailer.ids import utc_now
from mailer.sent_log.models import SentLogEntry
from mailer.settings.checks import (
    SKIPPED,
    Check,
    DnsLookup,
    attachment_check,
    dns_checks,
    size_limit_check,
)
from mailer.settings.models import Profile, TestUnsavedInput
from mailer.settings.sending import deliver
from mailer.settings.service import SendingProfile, SettingsService

TEST_PDF_NAME = "test-invoice.pdf"
TEST_PDF_BYTES = 50 * 1024  # about what a one-page invoice with a logo weighs
CHECKS_SECONDS = 2.0  # the most the checks add to a test, SES identity and DNS lookups together
# The largest message of the API transports, which have no EHLO to ask: Amazon SES v2 takes a raw
# message up to 40 MB (docs.aws.amazon.com/ses/latest/dg/quotas.html), the Gmail API 35 MB
# (developers.google.com/gmail/api/guides/uploads), and Exchange Online's default message size
# limit is 35 MB, which Graph sends within (learn.microsoft.com/graph/api/attachment-createuploadsession).
API_SIZE_LIMITS = {
    "ses": 40 * 1024 * 1024,
    "gmail_api": 35 * 1024 * 1024,
    "microsoft_graph": 35 * 1024 * 1024,
}
API_PRESETS = {"microsoft_graph": "office365", "gmail_api": "gmail"}  # whose SPF and DKIM advice applies
# Failures at the data stage that are the server refusing the content; a throttled, timed-out or
# dropped connection, or a sender refused at DATA, says nothing about the attachment.
CONTENT_REFUSED = frozenset(
    {Category.MESSAGE_REJECTED, Category.MESSAGE_TOO_LARGE, Category.SES_MESSAGE_REJECTED}
)


class CheckView(BaseModel):
    """One check of a test besides the send: what it found (`detail`) and what to change (`hint`)."""

    name: Literal["attachment", "size_limit", "spf", "dmarc", "dkim"]
    status: Literal["pass", "warn", "fail", "skipped"]
    detail: str
    hint: str = ""


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
    # Whether the settings will carry real mail: attachment, size_limit, spf, dmarc, dkim, in that
    # order. None of them changes `ok`, which is about the send alone.
    checks: list[CheckView]


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


@cache
def sample_attachment() -> Attachment:
    """The PDF every test message carries, the same bytes each time: a server that refuses
    attachments, or PDF files, refuses the test as it would refuse an invoice."""
    first_page = [
        "Test invoice",
        "",
        "This PDF came with the test message of your email settings, to show that",
        "documents such as invoices and statements reach your customers as attachments.",
        "It is a sample: nothing is owed, and the line items below are not charges.",
    ]
    return Attachment(TEST_PDF_NAME, sample_invoice(first_page, TEST_PDF_BYTES))


def build_test_message(profile: SendingProfile, to: str, now: datetime) -> OutgoingMessage:
    s = profile.settings
    rows = _describe(profile)
    when = now.strftime("%Y-%m-%d %H:%M UTC")
    pdf = sample_attachment()
    attached = (
        f"Attached: {pdf.filename} ({len(pdf.content) // 1024} KB), a sample PDF sent the way your "
        "invoices are; nothing is owed."
    )
    text = (
        "This is a test message.\n\n"
        "If you can read it, the email settings below work and your documents and reminders "
        "can be sent with them.\n\n"
        + "\n".join(f"{label}: {value}" for label, value in rows)
        + f"\nSent: {when}\n\n{attached}\n\n"
        "If it landed in spam or junk, mark it as not spam so later mail arrives in the inbox.\n"
    )
    html = (
        "<p>This is a test message.</p><p>If you can read it, the email settings below work and your "
        "documents and reminders can be sent with them.</p><table>"
        + "".join(f"<tr><th align='left'>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)
        + f"<tr><th align='left'>Sent</th><td>{escape(when)}</td></tr></table><p>{escape(attached)}</p>"
        "<p>If it landed in spam or junk, mark it as not spam so later mail arrives in the inbox.</p>"
    )
    return build_message(
        sender=Sender(s.from_email, s.from_name, s.reply_to),
        to=[to],
        subject="Test message: your email settings work",
        text=text,
        html=html,
        attachments=[pdf],
        now=now,
    )


def checks_after_send(
    profile: SendingProfile, config: MailerConfig, delivery: Delivery | None, failure: Failure | None
) -> list[Check]:
    """The checks of one test after its send, in the answer's order; they take CHECKS_SECONDS at
    most together and never raise (a check that cannot tell is `skipped`)."""
    s = profile.settings
    deadline = time.monotonic() + CHECKS_SECONDS
    checks = [_attachment_check(failure), _size_check(s.transport, config, delivery)]
    ses_dkim = _ses_dkim(s.from_email, s.ses_region, deadline) if s.transport == "ses" else None
    resolver = DnsLookup(config.dns_servers, budget_seconds=max(0.0, deadline - time.monotonic()))
    domain = s.from_email.rpartition("@")[2]
    try:
        checks += dns_checks(
            domain,
            _preset_of(s.transport, s.provider, s.ses_region, ses_dkim),
            resolver=resolver,
            ses_dkim=ses_dkim,
        )
    except Exception:  # noqa: BLE001 - a check never fails the test; this one could not tell
        checks += [Check(name, SKIPPED, "The check could not be made.") for name in ("spf", "dmarc", "dkim")]
    return checks


def _attachment_check(failure: Failure | None) -> Check:
    if failure is None:
        sent: bool | None = True
    elif failure.stage == "data" and failure.category in CONTENT_REFUSED:
        sent = False
    else:
        sent = None  # the send stopped before the server judged the message
    return attachment_check(sent, len(sample_attachment().content))


def _size_check(transport: str, config: MailerConfig, delivery: Delivery | None) -> Check:
    if delivery is None:
        return Check(
            "size_limit",
            SKIPPED,
            "The send failed, so the server's message size limit was not read.",
            "Fix what stopped the send and test again.",
        )
    server_size = delivery.server_size if transport == "smtp" else API_SIZE_LIMITS.get(transport)
    return size_limit_check(server_size, config.attachment_max_bytes)


def _preset_of(
    transport: str, provider: str | None, ses_region: str | None, ses_dkim: str | None
) -> str | None:
    """The provider preset whose SPF domain and DKIM advice apply. SES is told apart by its DKIM
    status; when that could not be read, the SES SMTP preset of the region stands in for it, so
    that SPF is still checked for amazonses.com."""
    if transport == "ses":
        stand_in = f"ses_smtp_{(ses_region or '').replace('-', '_')}"
        return stand_in if ses_dkim is None and stand_in in PROVIDERS else None
    return provider or API_PRESETS.get(transport)


def _ses_dkim(from_email: str, region: str | None, deadline: float) -> str | None:
    """The DKIM status of the SES identity, or None when it is not known by `deadline`: the read
    runs on a thread of its own, so that an SES that does not answer cannot hold the test up."""
    found: list[str | None] = []

    def read() -> None:
        try:
            found.append(ses_identity.dkim_status(from_email, region))
        except Exception:  # noqa: BLE001 - unknown, as when SES refuses to say
            found.append(None)

    reader = threading.Thread(target=read, name="ses-dkim-status", daemon=True)
    reader.start()
    reader.join(max(0.0, deadline - time.monotonic()))
    return found[0] if found else None


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
        elapsed_ms = int((time.monotonic() - start) * 1000)  # the send's; the checks come after
        checks = [
            CheckView.model_validate(c.as_dict())
            for c in checks_after_send(profile, self.config, delivery, failure)
        ]
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
                ok=False, to=to, email_id=email_id, elapsed_ms=elapsed_ms, checks=checks, **failure.as_dict()
            )
        return AccountTestResult(
            ok=True,
            to=to,
            email_id=email_id,
            message_id=entry.message_id,
            elapsed_ms=elapsed_ms,
            refused=entry.refused or None,
            checks=checks,
        )

    def _record(self, caller: Caller, entry: SentLogEntry) -> str | None:
        """The entry's id, or None when the sent log could not be written (the test still answers)."""
        try:
            self.sent_log.put(caller.tenant_id, entry)
        except MailerError:
            self.logger.warning("sent log write failed for a test message", extra={"email_id": entry.id})
            return None
        return entry.id
