"""The objects a function needs, wired once from its configuration."""

from __future__ import annotations

from functools import cached_property
from typing import Any

from mailer.automations.engine import AutomatedEmail
from mailer.automations.models import AutomationService
from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.dal.ledger_table import LedgerStore
from mailer.dal.outbox_queue import OutboxQueue
from mailer.dal.secret_store import SecretStore
from mailer.dal.sent_log_table import SentLogStore
from mailer.dal.settings_table import SettingsStore
from mailer.dal.work_orders_table import WorkOrderStore
from mailer.documents.service import DocumentEmailService
from mailer.documents.wording import DocumentTemplateService
from mailer.ids import utc_now
from mailer.settings.service import SettingsService


def _required(value: str | None, variable: str) -> str:
    if not value:
        raise RuntimeError(f"{variable} is not set for this function")
    return value


class Services:
    def __init__(self, config: MailerConfig, logger: Any = None) -> None:
        self.config = config
        self.logger = logger
        self.store = SettingsStore(config.settings_table)
        secrets = SecretStore(config.secret_prefix, max_age_seconds=config.secret_max_age_seconds)
        self.settings = SettingsService(self.store, secrets)
        self.sent_log = SentLogStore(config.sent_log_table, retention_days=config.sent_log_retention_days)
        self.document_templates = DocumentTemplateService(self.store, utc_now)
        self.automations = AutomationService(self.store, utc_now)

    @classmethod
    def from_config(cls, config: MailerConfig, logger: Any = None) -> Services:
        return cls(config, logger)

    @cached_property
    def attachments(self) -> AttachmentStore:
        bucket = _required(self.config.attachments_bucket, "ATTACHMENTS_BUCKET")
        return AttachmentStore(bucket, url_ttl_seconds=self.config.upload_url_ttl_seconds)

    @cached_property
    def documents(self) -> DocumentEmailService:
        return DocumentEmailService(
            self.settings, self.document_templates, self.attachments, self.sent_log, self.config, self.logger
        )

    @cached_property
    def work_orders(self) -> WorkOrderStore:
        return WorkOrderStore(_required(self.config.work_orders_table, "WORK_ORDERS_TABLE"))

    @cached_property
    def automated(self) -> AutomatedEmail:
        """Automated email; the queue, ledger and bucket are needed only by the parts that use them."""
        return AutomatedEmail(
            config=self.config,
            settings=self.settings,
            automations=self.automations,
            work_orders=self.work_orders,
            ledger=LedgerStore(self.config.ledger_table or ""),
            outbox=OutboxQueue(self.config.outbox_queue_url or ""),
            sent_log=self.sent_log,
            attachments=self.attachments if self.config.attachments_bucket else None,
            logger=self.logger,
        )
