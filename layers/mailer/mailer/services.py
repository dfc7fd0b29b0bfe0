"""The objects a function needs, wired once from its configuration."""

from __future__ import annotations

from dataclasses import dataclass

from mailer.config import MailerConfig
from mailer.secret_store import SecretStore
from mailer.sent_log_store import SentLogStore
from mailer.settings_service import SettingsService
from mailer.settings_store import SettingsStore


@dataclass(frozen=True)
class Services:
    config: MailerConfig
    settings: SettingsService
    sent_log: SentLogStore

    @classmethod
    def from_config(cls, config: MailerConfig) -> Services:
        secrets = SecretStore(config.secret_prefix, max_age_seconds=config.secret_max_age_seconds)
        return cls(
            config=config,
            settings=SettingsService(SettingsStore(config.settings_table), secrets),
            sent_log=SentLogStore(config.sent_log_table, retention_days=config.sent_log_retention_days),
        )
