"""Telling the company that an account lost its OAuth connection (once per loss)."""

from __future__ import annotations

from typing import Any

from mailer.config import MailerConfig
from mailer.delivery.message import Sender, build_message
from mailer.errors import MailerError, NotFound
from mailer.identity import Caller
from mailer.settings.models import SettingsView
from mailer.settings.sending import deliver
from mailer.settings.service import ProfileRef, SettingsService
from mailer.settings.tokens import PROVIDER_LABELS


def notice_for_reconnect(
    settings: SettingsService, config: MailerConfig, ref: ProfileRef, lost: SettingsView, logger: Any
) -> None:
    system = Caller(tenant_id=ref.tenant_id, user_id="automation", email=None, is_admin=True)
    try:
        company = settings.saved_profile(system, "company")
    except NotFound:
        return
    notify = company.settings.notify_email
    if not notify or (ref.profile == "company"):
        # The company account is the one that lost its connection: no mail can go out through it.
        logger.warning(
            "oauth connection lost; the company account cannot send the notice",
            extra={"profile": ref.profile},
        )
        return
    label = PROVIDER_LABELS.get(lost.oauth.provider if lost.oauth else "", "email")
    account = lost.oauth.account if lost.oauth else lost.from_email
    notice = build_message(
        sender=Sender(company.settings.from_email, company.settings.from_name, None),
        to=[notify],
        subject=f"Reconnect needed: the {label} account {account}",
        text=(
            f"The {label} account {account} can no longer send mail from the product: its connection was "
            "revoked or has expired.\n\nHow to fix it: open the email settings and connect the account "
            "again. Until then, mail from this account is not sent.\n"
        ),
        automated=True,
    )
    try:
        deliver(company, notice, config)
    except MailerError as exc:
        logger.error("reconnect notice not sent", extra={"error": type(exc).__name__})
