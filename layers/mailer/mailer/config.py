"""Function configuration: read once from the environment at cold start, validated, passed down.

Each field names its environment variable. A bad value is refused naming that variable, a table
or queue a function needs and lacks stops the function at cold start (`require`), and nothing
falls back to a made-up name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ConfigError(RuntimeError):
    """The function's environment is incomplete or wrong; raised at cold start, naming the variable."""


class MailerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    settings_table: str = Field(alias="SETTINGS_TABLE", min_length=1)
    sent_log_table: str = Field(alias="SENT_LOG_TABLE", min_length=1)
    secret_prefix: str = Field(alias="SECRET_PREFIX", min_length=1)
    sent_log_retention_days: int = Field(90, alias="SENT_LOG_RETENTION_DAYS", ge=1, le=3650)
    smtp_timeout_seconds: float = Field(15.0, alias="SMTP_TIMEOUT_SECONDS", gt=0, le=120)
    secret_max_age_seconds: int = Field(300, alias="SECRET_MAX_AGE_SECONDS", ge=0)
    extra_ca_bundle: str | None = Field(None, alias="MAILER_EXTRA_CA_BUNDLE")
    attachments_bucket: str | None = Field(None, alias="ATTACHMENTS_BUCKET", min_length=1)
    attachment_max_bytes: int = Field(
        20 * 1024 * 1024, alias="ATTACHMENT_MAX_BYTES", ge=1, le=40 * 1024 * 1024
    )
    upload_url_ttl_seconds: int = Field(900, alias="UPLOAD_URL_TTL_SECONDS", ge=60, le=3600)
    work_orders_table: str | None = Field(None, alias="WORK_ORDERS_TABLE", min_length=1)
    ledger_table: str | None = Field(None, alias="LEDGER_TABLE", min_length=1)
    outbox_queue_url: str | None = Field(None, alias="OUTBOX_QUEUE_URL", min_length=1)
    default_timezone: str = Field("UTC", alias="DEFAULT_TIMEZONE", min_length=1)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MailerConfig:
        """Validate the environment; an empty variable counts as unset."""
        source = os.environ if env is None else env
        names = {field.alias for field in cls.model_fields.values() if field.alias}
        values: dict[str, Any] = {k: v for k, v in source.items() if k in names and v != ""}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"The function's environment is not valid: {problems}") from None

    def require(self, *fields: str) -> MailerConfig:
        """Fail at cold start when a variable this function needs is not set."""
        missing = [type(self).model_fields[f].alias or f for f in fields if getattr(self, f) is None]
        if missing:
            raise ConfigError(f"{', '.join(missing)} is not set for this function")
        return self

    def value(self, field: str) -> str:
        """A variable the caller needs at this point; ConfigError naming it when it is not set."""
        found = getattr(self, field)
        if found is None:
            raise ConfigError(f"{type(self).model_fields[field].alias} is not set for this function")
        return str(found)
