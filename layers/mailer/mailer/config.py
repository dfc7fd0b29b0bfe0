"""Function configuration, read once from the environment at the edge and passed down."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field


class MailerConfig(BaseModel):
    model_config = ConfigDict(frozen=True)

    settings_table: str = Field(min_length=1)
    sent_log_table: str = Field(min_length=1)
    secret_prefix: str = Field(min_length=1)
    sent_log_retention_days: int = Field(default=90, ge=1, le=3650)
    smtp_timeout_seconds: float = Field(default=15.0, gt=0, le=120)
    secret_max_age_seconds: int = Field(default=300, ge=0)
    extra_ca_bundle: str | None = None
    attachments_bucket: str | None = None
    attachment_max_bytes: int = Field(default=20 * 1024 * 1024, ge=1, le=40 * 1024 * 1024)
    upload_url_ttl_seconds: int = Field(default=900, ge=60, le=3600)
    work_orders_table: str | None = None
    ledger_table: str | None = None
    outbox_queue_url: str | None = None
    default_timezone: str = "UTC"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MailerConfig:
        """Fail at start-up, naming the variable, rather than fall back to a default table name."""
        env = os.environ if env is None else env
        return cls(
            settings_table=env.get("SETTINGS_TABLE", ""),
            sent_log_table=env.get("SENT_LOG_TABLE", ""),
            secret_prefix=env.get("SECRET_PREFIX", ""),
            sent_log_retention_days=int(env.get("SENT_LOG_RETENTION_DAYS") or 90),
            smtp_timeout_seconds=float(env.get("SMTP_TIMEOUT_SECONDS") or 15),
            secret_max_age_seconds=int(env.get("SECRET_MAX_AGE_SECONDS") or 300),
            extra_ca_bundle=env.get("MAILER_EXTRA_CA_BUNDLE") or None,
            attachments_bucket=env.get("ATTACHMENTS_BUCKET") or None,
            attachment_max_bytes=int(env.get("ATTACHMENT_MAX_BYTES") or 20 * 1024 * 1024),
            upload_url_ttl_seconds=int(env.get("UPLOAD_URL_TTL_SECONDS") or 900),
            work_orders_table=env.get("WORK_ORDERS_TABLE") or None,
            ledger_table=env.get("LEDGER_TABLE") or None,
            outbox_queue_url=env.get("OUTBOX_QUEUE_URL") or None,
            default_timezone=env.get("DEFAULT_TIMEZONE") or "UTC",
        )
