"""What a reminder and a statement sent on request share: the company's sending profile, the one
interactive send (`send_now`: deadline, budget, refused recipients), and the sent-log entry kept
with what a support person needs to see what was sent."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailer.config import MailerConfig
from mailer.delivery.failures import DeliveryFailed
from mailer.delivery.message import OutgoingMessage, Sender, build_message
from mailer.documents.attachments import LoadedAttachments
from mailer.documents.models import Rendered
from mailer.errors import Conflict, NotFound
from mailer.identity import Caller
from mailer.ids import utc_now
from mailer.sent_log.models import SentLogEntry
from mailer.settings.budget import SendingBudgets
from mailer.settings.models import SettingsView
from mailer.settings.sending import send_now
from mailer.settings.service import SendingProfile, SettingsService
from mailer.tracking.opens import OpenPixel, tracked

LogEntry = Callable[[str, SentLogEntry, dict[str, Any]], None]  # (tenant, entry, what it keeps)


def to_customer(
    settings: SettingsView, address: str, rendered: Rendered, loaded: LoadedAttachments, *, automated: bool
) -> OutgoingMessage:
    """The company's mail to one customer, with its archive copy; `automated` (a scheduled run's)
    marks it `Auto-Submitted`, a person's request does not."""
    return build_message(
        sender=Sender(settings.from_email, settings.from_name, settings.reply_to),
        to=[address],
        bcc=[settings.bcc] if settings.bcc else [],
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        attachments=loaded.attachments,
        automated=automated,
    )


def company_profile(settings: SettingsService, caller: Caller) -> SendingProfile:
    """The company account; a 409 when the company has saved no settings."""
    try:
        return settings.saved_profile(caller, "company")
    except NotFound:
        raise Conflict(
            "The company has no email settings yet: an administrator must save them under /settings/company."
        ) from None


def send_and_log(
    caller: Caller,
    profile: SendingProfile,
    message: tuple[Rendered, OutgoingMessage],
    loaded: LoadedAttachments,
    *,
    config: MailerConfig,
    budgets: SendingBudgets,
    log: LogEntry,
    fields: dict[str, Any],
    kept: dict[str, Any],
    pixel: OpenPixel | None = None,
) -> SentLogEntry:
    """Send to the customer now and log the attempt as `fields` name it (`automation`, `document`);
    the entry keeps `kept` with the subject, body and attachment versions. A refused send is
    DeliveryFailed with the entry's id (502), after the entry is kept."""
    rendered, outgoing = message
    to = [a.addr_spec for a in outgoing.message["To"].addresses]
    bcc = [profile.settings.bcc] if profile.settings.bcc else []
    entry_id, outgoing = tracked(pixel, outgoing, caller.tenant_id, tracks_opens=profile.settings.track_opens)
    created_at = utc_now()
    delivery, failure = send_now(profile, outgoing, config, budgets, to)
    entry = SentLogEntry.attempt(
        id=entry_id,
        kind="automation",
        delivery=delivery,
        failure=failure,
        created_at=created_at,
        from_=profile.settings.from_email,
        to=to,
        bcc=bcc,
        subject=rendered.subject,
        profile="company",
        attachments=loaded.infos,
        **fields,
    )
    log(
        caller.tenant_id,
        entry,
        kept
        | {
            "subject": rendered.subject,
            "body_html": rendered.html,
            "attachment_versions": [version.model_dump(mode="json") for version in loaded.versions],
        },
    )
    if failure:
        raise DeliveryFailed(failure, email_id=entry.id)
    return entry
