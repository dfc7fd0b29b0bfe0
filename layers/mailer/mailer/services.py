"""The objects a function needs, wired once from its configuration."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from mailer.attachment_store import AttachmentStore
from mailer.config import MailerConfig
from mailer.document_email import DocumentEmailService
from mailer.document_templates import DocumentTemplateService
from mailer.secret_store import SecretStore
from mailer.sent_log_store import SentLogStore
from mailer.settings_service import SettingsService, utc_now
from mailer.settings_store import SettingsStore


class Services:
    def __init__(self, config: MailerConfig, logger: Any = None) -> None:
        self.config = config
        self.logger = logger
        self.store = SettingsStore(config.settings_table)
        secrets = SecretStore(config.secret_prefix, max_age_seconds=config.secret_max_age_seconds)
        self.settings = SettingsService(self.store, secrets)
        self.sent_log = SentLogStore(config.sent_log_table, retention_days=config.sent_log_retention_days)
        self.document_templates = DocumentTemplateService(self.store, utc_now)

    @classmethod
    def from_config(cls, config: MailerConfig, logger: Any = None) -> Services:
        return cls(config, logger)

    @cached_property
    def documents(self) -> DocumentEmailService:
        if not self.config.attachments_bucket:
            raise RuntimeError("ATTACHMENTS_BUCKET is not set for this function")
        attachments = AttachmentStore(
            self.config.attachments_bucket, url_ttl_seconds=self.config.upload_url_ttl_seconds
        )
        return DocumentEmailService(
            self.settings, self.document_templates, attachments, self.sent_log, self.config, self.logger
        )
