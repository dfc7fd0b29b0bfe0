"""Reading bounce reports from the sending mailboxes of SMTP and OAuth senders.

For each profile with `read_bounces` on: sign in to its IMAP server with the profile's own
credentials (its password, or an OAuth access token with XOAUTH2), read the delivery status
notifications that came since the last read, record each on the entry whose Message-ID it names
(only the company's own entries), and keep where reading stopped and how it went, which
GET /settings/{profile} shows. A mailbox that cannot be read is classified like a failed send and
tried again on the next run; its cursor stays where it was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from mailer.config import MailerConfig
from mailer.dal.bounce_reads import BounceRead, BounceReadStore
from mailer.dal.keys import RUN_SHARDS
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.providers import PROVIDERS
from mailer.errors import MailerError
from mailer.identity import Caller
from mailer.settings.models import SettingsView
from mailer.settings.service import SendingProfile, SettingsService
from mailer.tracking.mailbox import MailboxAccount, MailboxCursor, MailboxRead, read_reports
from mailer.tracking.service import Tracking

Reader = Callable[..., MailboxRead]


def imap_server(view: SettingsView) -> tuple[str, int] | None:
    """The IMAP server a profile reads: the saved one, else the provider preset's."""
    preset = PROVIDERS.get(view.provider or "")
    host = view.imap_host or (preset.imap_host if preset else None)
    if host is None:
        return None
    port = view.imap_port or (preset.imap_port if preset and preset.imap_host == host else None) or 993
    return host, port


def caller_of(tenant_id: str, profile_key: str) -> tuple[Caller, str]:
    """The caller a profile key stands for, and the profile name ("company" or "me")."""
    if profile_key == "company":
        return Caller(tenant_id=tenant_id, user_id="bounce-reader", email=None, is_admin=True), "company"
    return Caller(
        tenant_id=tenant_id, user_id=profile_key.removeprefix("user/"), email=None, is_admin=False
    ), "me"


@dataclass
class BounceReader:
    settings: SettingsService
    reads: BounceReadStore
    tracking: Tracking
    config: MailerConfig
    clock: Callable[[], str]
    logger: Any
    read: Reader = read_reports

    def run(self) -> dict[str, int]:
        """Every listed mailbox once: how many were read, failed, and reports recorded."""
        counts = {"mailboxes": 0, "failed": 0, "recorded": 0}
        for shard in range(RUN_SHARDS):
            for listed in self.reads.listed(shard):
                outcome = self.read_one(listed)
                counts["mailboxes"] += 1
                counts["failed"] += outcome.status == "failed"
                counts["recorded"] += outcome.reports_read - listed.reports_read
        return counts

    def read_one(self, listed: BounceRead) -> BounceRead:
        caller, profile = caller_of(listed.tenant_id, listed.profile_key)
        try:
            sending = self.settings.saved_profile(caller, profile)  # type: ignore[arg-type]
            account = self._account(sending)
            cursor = MailboxCursor(uidvalidity=listed.uidvalidity, last_uid=listed.last_uid)
            found = self.read(
                account,
                cursor,
                timeout=self.config.smtp_timeout_seconds,
                extra_ca_bundle=self.config.extra_ca_bundle,
                guard=self.config.guard,
            )
        except DeliveryFailed as exc:
            return self._keep(replace(listed, status="failed", error=exc.failure.as_dict()))
        except MailerError as exc:
            error = {"stage": "settings", "category": "not_configured", "hint": exc.detail, "transient": True}
            return self._keep(replace(listed, status="failed", error=error))
        recorded = 0
        for _uid, report in found.reports:
            if self.tracking.record_bounce(listed.tenant_id, report) == "recorded":
                recorded += 1
        return self._keep(
            replace(
                listed,
                uidvalidity=found.cursor.uidvalidity,
                last_uid=found.cursor.last_uid,
                status="ok",
                error=None,
                reports_read=listed.reports_read + recorded,
            )
        )

    def _account(self, sending: SendingProfile) -> MailboxAccount:
        view = sending.settings
        server = imap_server(view)
        username = view.username or (view.oauth.account if view.oauth else None)
        if server is None or not username:
            raise DeliveryFailed(
                Failure(
                    stage="connect",
                    category="not_configured",
                    transient=False,
                    hint="Set imap_host (and imap_port) in the settings: the provider has no known "
                    "IMAP server, or the account has no username.",
                )
            )
        host, port = server
        security = "starttls" if port == 143 else "ssl"
        if sending.tokens is not None:
            token = sending.tokens.access_token(refresh=False)
            return MailboxAccount(host, port, security, username, oauth_token=token)
        return MailboxAccount(host, port, security, username, password=sending.password())

    def _keep(self, read: BounceRead) -> BounceRead:
        read = replace(read, checked_at=self.clock())
        self.reads.record(read)
        if read.status == "failed":
            self.logger.warning(
                "bounce reports not read",
                extra={"tenant_id": read.tenant_id, "category": (read.error or {}).get("category")},
            )
        return read
