"""Function configuration: read once from the environment at cold start, validated, passed down.

Each field names its environment variable. A bad value is refused naming that variable, a table
or queue a function needs and lacks stops the function at cold start (`require`), and nothing
falls back to a made-up name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from mailer.delivery.guard import AddressGuard

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(RuntimeError):
    """The function's environment is incomplete or wrong; raised at cold start, naming the variable."""


Config = TypeVar("Config", bound=BaseModel)


def _from_env(model: type[Config], env: Mapping[str, str] | None) -> Config:
    """Validate the environment into `model`, whose field aliases are the variables' names; an empty
    variable counts as unset, and an error names the variable."""
    source = os.environ if env is None else env
    names = {field.alias for field in model.model_fields.values() if field.alias}
    values: dict[str, Any] = {k: v for k, v in source.items() if k in names and v != ""}
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"The function's environment is not valid: {problems}") from None


class MailerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    settings_table: str = Field(alias="SETTINGS_TABLE", min_length=1)
    sent_log_table: str = Field(alias="SENT_LOG_TABLE", min_length=1)
    secret_prefix: str = Field(alias="SECRET_PREFIX", min_length=1)
    sent_log_retention_days: int = Field(90, alias="SENT_LOG_RETENTION_DAYS", ge=1, le=3650)
    smtp_timeout_seconds: float = Field(15.0, alias="SMTP_TIMEOUT_SECONDS", gt=0, le=120)
    # An interactive send (test, document email) answers before API Gateway's 29 s, whatever the server.
    send_deadline_seconds: float = Field(25.0, alias="SEND_DEADLINE_SECONDS", gt=0, le=28)
    secret_max_age_seconds: int = Field(300, alias="SECRET_MAX_AGE_SECONDS", ge=0)
    extra_ca_bundle: str | None = Field(None, alias="MAILER_EXTRA_CA_BUNDLE")
    allowed_networks: str = Field("", alias="MAILER_ALLOWED_NETWORKS")  # CIDRs the address guard admits
    attachments_bucket: str | None = Field(None, alias="ATTACHMENTS_BUCKET", min_length=1)
    attachment_max_bytes: int = Field(
        20 * 1024 * 1024, alias="ATTACHMENT_MAX_BYTES", ge=1, le=40 * 1024 * 1024
    )
    upload_url_ttl_seconds: int = Field(900, alias="UPLOAD_URL_TTL_SECONDS", ge=60, le=3600)
    work_orders_table: str | None = Field(None, alias="WORK_ORDERS_TABLE", min_length=1)
    invoices_table: str | None = Field(None, alias="INVOICES_TABLE", min_length=1)
    ledger_table: str | None = Field(None, alias="LEDGER_TABLE", min_length=1)
    outbox_queue_url: str | None = Field(None, alias="OUTBOX_QUEUE_URL", min_length=1)
    # The schedule tick's queue of "plan this company" messages, read by the company planner.
    plan_queue_url: str | None = Field(None, alias="PLAN_QUEUE_URL", min_length=1)
    oauth_states_table: str | None = Field(None, alias="OAUTH_STATES_TABLE", min_length=1)
    idempotency_table: str | None = Field(None, alias="IDEMPOTENCY_TABLE", min_length=1)
    default_timezone: str = Field("UTC", alias="DEFAULT_TIMEZONE", min_length=1)
    budget_table: str | None = Field(None, alias="BUDGET_TABLE", min_length=1)  # sending budgets
    # A claim older than this (the outbox queue's visibility timeout) is no longer being worked on.
    stale_claim_seconds: int = Field(720, alias="STALE_CLAIM_SECONDS", ge=60, le=43200)
    # Delivery tracking: the stack's SES configuration set (its events go to EventBridge), the
    # secret that signs open-tracking pixels, and the public API URL the pixels point at.
    ses_configuration_set: str | None = Field(None, alias="SES_CONFIGURATION_SET", min_length=1)
    tracking_key_secret: str | None = Field(None, alias="TRACKING_KEY_SECRET", min_length=1)
    public_api_url: str | None = Field(None, alias="PUBLIC_API_URL", min_length=1)
    # The resolvers of a test send's SPF and DMARC lookups (comma-separated host:port); None: the system's.
    dns_servers: str | None = Field(None, alias="MAILER_DNS_SERVERS")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MailerConfig:
        return _from_env(cls, env)

    @field_validator("allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        from mailer.delivery.guard import parse_networks

        parse_networks(value)  # ValueError names the bad network
        return value

    @field_validator("dns_servers")
    @classmethod
    def _dns_servers(cls, value: str | None) -> str | None:
        from mailer.settings.checks import parse_dns_servers

        parse_dns_servers(value)  # ValueError names MAILER_DNS_SERVERS and the bad entry
        return value

    @property
    def guard(self) -> AddressGuard:
        from mailer.delivery.guard import AddressGuard, parse_networks

        return AddressGuard(parse_networks(self.allowed_networks))

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


class OAuthConfig(BaseModel):
    """Where the OAuth providers and their mail APIs are, and this app's client ids (contract names).

    Client secrets come from the environment locally; deployed, from the Secrets Manager secret
    named by OAUTH_CLIENT_SECRETS_NAME (JSON: {"microsoft": "...", "google": "..."}).
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    redirect_url: str | None = Field(None, alias="OAUTH_REDIRECT_URL")
    allowed_origins: str = Field("*", alias="OAUTH_ALLOWED_ORIGINS")
    client_secrets_name: str | None = Field(None, alias="OAUTH_CLIENT_SECRETS_NAME")
    microsoft_client_id: str | None = Field(None, alias="OAUTH_MICROSOFT_CLIENT_ID")
    microsoft_client_secret: str | None = Field(None, alias="OAUTH_MICROSOFT_CLIENT_SECRET", repr=False)
    microsoft_authorize_url: str = Field(
        "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
        alias="OAUTH_MICROSOFT_AUTHORIZE_URL",
    )
    microsoft_token_url: str = Field(
        "https://login.microsoftonline.com/common/oauth2/v2.0/token", alias="OAUTH_MICROSOFT_TOKEN_URL"
    )
    graph_url: str = Field("https://graph.microsoft.com", alias="MICROSOFT_GRAPH_URL")
    microsoft_smtp: str = Field("smtp.office365.com:587", alias="OAUTH_MICROSOFT_SMTP")
    google_client_id: str | None = Field(None, alias="OAUTH_GOOGLE_CLIENT_ID")
    google_client_secret: str | None = Field(None, alias="OAUTH_GOOGLE_CLIENT_SECRET", repr=False)
    google_authorize_url: str = Field(
        "https://accounts.google.com/o/oauth2/v2/auth", alias="OAUTH_GOOGLE_AUTHORIZE_URL"
    )
    google_token_url: str = Field("https://oauth2.googleapis.com/token", alias="OAUTH_GOOGLE_TOKEN_URL")
    google_revoke_url: str = Field("https://oauth2.googleapis.com/revoke", alias="OAUTH_GOOGLE_REVOKE_URL")
    google_userinfo_url: str = Field(
        "https://openidconnect.googleapis.com/v1/userinfo", alias="OAUTH_GOOGLE_USERINFO_URL"
    )
    gmail_url: str = Field("https://gmail.googleapis.com", alias="GMAIL_API_URL")
    google_smtp: str = Field("smtp.gmail.com:587", alias="OAUTH_GOOGLE_SMTP")
    http_timeout_seconds: float = Field(10.0, alias="OAUTH_HTTP_TIMEOUT_SECONDS", gt=0, le=60)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> OAuthConfig:
        config = _from_env(cls, env)
        config.check_urls()
        return config

    def check_urls(self) -> None:
        """Every endpoint must be https, except on a loopback host (the local stack and tests)."""
        from mailer.delivery.http import require_safe_url

        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if name.endswith("_url") and value and field.alias:
                try:
                    require_safe_url(value)
                except ValueError as exc:
                    raise ConfigError(f"{field.alias}: {exc}") from None
