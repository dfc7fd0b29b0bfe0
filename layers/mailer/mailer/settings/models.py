"""Email settings: what a user may save, how it is checked, and what is shown back."""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    SecretStr,
    field_validator,
    model_validator,
)

from mailer.delivery.message import HEADER_CHARS_MESSAGE, NOT_IN_HEADERS
from mailer.delivery.providers import PROVIDERS
from mailer.errors import FieldError, InvalidInput
from mailer.settings.send_time import SendTime

Profile = Literal["company", "me"]
Security = Literal["ssl", "starttls", "opportunistic", "none"]
TransportKind = Literal["smtp", "ses", "microsoft_graph", "gmail_api"]
AuthKind = Literal["password", "oauth"]
OAUTH_API_TRANSPORTS = ("microsoft_graph", "gmail_api")

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?$"
    r"|^\d{1,3}(\.\d{1,3}){3}$|^\[?[0-9A-Fa-f:]+\]?$"
)


def reject_line_breaks(value: str) -> str:
    """Header values with line breaks would let a caller add headers of their own."""
    if not NOT_IN_HEADERS.isdisjoint(value):
        raise ValueError(HEADER_CHARS_MESSAGE)
    return value


def valid_email(value: str) -> str:
    # Imported when an address is first checked, not at every cold start.
    from email_validator import EmailNotValidError, validate_email

    reject_line_breaks(value)
    try:
        # test_environment admits the reserved .test domain used by the local stack.
        return validate_email(value, check_deliverability=False, test_environment=True).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid email address: {exc}") from None


def valid_host(value: str) -> str:
    if not _HOSTNAME.match(value):
        raise ValueError("not a valid host name or IP address")
    return value.lower().rstrip(".")


def valid_timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError("not a known IANA time zone name, for example America/Chicago") from None
    return value


class LimitsInput(BaseModel):
    """A sending account's budget; each null is the provider preset's default (GET /providers)."""

    model_config = ConfigDict(extra="forbid")

    per_minute: int | None = Field(default=None, ge=1, le=10_000)  # messages a minute
    per_day: int | None = Field(default=None, ge=1, le=1_000_000)  # recipients a day
    connections: int | None = Field(default=None, ge=1, le=50)  # connections open at once


class Usage(BaseModel):
    """What the account sent: messages this minute, recipients today (UTC)."""

    last_minute: int
    today: int


HeaderText = Annotated[str, AfterValidator(reject_line_breaks)]
EmailAddress = Annotated[str, Field(max_length=320), AfterValidator(valid_email)]
HostName = Annotated[str, Field(max_length=253), AfterValidator(valid_host)]
TimeZoneName = Annotated[str, Field(max_length=64), AfterValidator(valid_timezone)]


class SettingsInput(BaseModel):
    """Body of PUT /settings/{profile}. A password left out keeps the saved one."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    transport: TransportKind = "smtp"
    auth: AuthKind | None = None  # "password" replaces an OAuth connection; otherwise it is kept
    provider: str | None = Field(default=None, max_length=64)
    host: HostName | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    security: Security | None = None
    username: Annotated[HeaderText, Field(max_length=320)] | None = None
    password: SecretStr | None = Field(default=None, min_length=1, max_length=1024)
    from_name: Annotated[HeaderText, Field(max_length=200)] | None = None
    from_email: EmailAddress
    bcc: EmailAddress | None = None
    reply_to: EmailAddress | None = None
    notify_email: EmailAddress | None = None
    timezone: TimeZoneName | None = None
    send_time: SendTime | None = None  # company only: the daily runs' local time (default 12:00)
    ses_region: str | None = Field(default=None, pattern=r"^[a-z]{2}(-[a-z]+)+-\d$")
    ses_configuration_set: Annotated[HeaderText, Field(max_length=64)] | None = None
    limits: LimitsInput | None = None
    # SMTP: false sends one command at a time even when the server offers PIPELINING (for relays
    # and appliances that advertise it but break under it).
    pipelining: bool | None = None
    track_opens: bool | None = None  # company only: a pixel in HTML mail records opens (off by default)
    # Bounce reports (RFC 3464) read from this account's mailbox over IMAP, with the same sign-in;
    # host and port default to the provider preset's IMAP server.
    read_bounces: bool | None = None
    imap_host: HostName | None = None
    imap_port: int | None = Field(default=None, ge=1, le=65535)

    # The fields the body named, before presets filled in others (an OAuth profile's PUT checks them).
    _given: frozenset[str] = PrivateAttr(default=frozenset())

    @model_validator(mode="wrap")
    @classmethod
    def _remember_given(cls, data: Any, handler: ModelWrapValidatorHandler[SettingsInput]) -> SettingsInput:
        model = handler(data)
        model._given = frozenset(data) if isinstance(data, dict) else frozenset(model.model_fields_set)
        return model

    @property
    def given(self) -> frozenset[str]:
        return self._given

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str | None) -> str | None:
        if value is not None and value not in PROVIDERS:
            raise ValueError(f"unknown provider; GET /providers lists the {len(PROVIDERS)} known ids")
        return value

    @model_validator(mode="after")
    def _apply_preset(self) -> SettingsInput:
        """Fill what the chosen preset implies, and derive port and security from each other."""
        if self.transport != "smtp":
            return self
        preset = PROVIDERS.get(self.provider or "")
        if preset:
            if self.host is None:
                self.host = preset.host
            if self.port is None and self.security is None:
                self.port, self.security = preset.port, cast(Security, preset.security)
        if self.security is None:
            self.security = "ssl" if self.port == 465 else "starttls"
        if self.port is None:
            self.port = 465 if self.security == "ssl" else 587
        return self

    def check(self, profile: Profile, *, password_saved: bool) -> None:
        """Rules across fields; each error names its field."""
        errors = self.common_errors(profile)
        if self.transport in OAUTH_API_TRANSPORTS or self.auth == "oauth":
            errors.append(
                FieldError(
                    "auth" if self.auth == "oauth" else "transport",
                    "an OAuth connection is made with POST /oauth/{provider}/start, not saved here",
                )
            )
        if self.transport == "smtp":
            if not self.host:
                errors.append(FieldError("host", "required for SMTP (or choose a provider)"))
            if self.username and self.password is None and not password_saved:
                errors.append(FieldError("password", "required when a username is set"))
            if self.password is not None and not self.username:
                errors.append(FieldError("username", "required when a password is given"))
        if errors:
            raise InvalidInput("The settings are not valid.", errors=errors)

    def common_errors(self, profile: Profile) -> list[FieldError]:
        """Rules that hold for every kind of profile, password or OAuth."""
        errors: list[FieldError] = []
        if self.bcc and self.bcc.casefold() == self.from_email.casefold():
            errors.append(
                FieldError("bcc", "must differ from from_email; many servers drop a copy sent to the sender")
            )
        if profile != "company":
            for name in ("notify_email", "timezone", "send_time", "track_opens"):
                if getattr(self, name) is not None:
                    errors.append(FieldError(name, "only company settings have this field"))
        return errors


class TestSavedInput(BaseModel):
    """Body of POST /settings/{profile}/test."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    to: EmailAddress | None = None


class TestUnsavedInput(SettingsInput):
    """Body of POST /settings/test: settings not yet saved, plus where to send the test.

    `profile`, when given, lends the saved password of that profile to settings sent without one,
    so a user can try a changed host or port without typing the password again.
    """

    to: EmailAddress | None = None
    profile: Profile | None = None


class SettingsWarning(BaseModel):
    field: str
    message: str


class OAuthInfo(BaseModel):
    provider: Literal["microsoft", "google"]
    account: str
    status: Literal["connected", "reconnect_required"] = "connected"
    connected_at: str | None = None
    scopes: list[str] = Field(default_factory=list)


class BounceReading(BaseModel):
    """How reading the mailbox's bounce reports went last time (GET /settings/{profile})."""

    status: Literal["pending", "ok", "failed"]
    imap_host: str | None = None  # in effect: the saved one or the preset's
    imap_port: int | None = None
    checked_at: str | None = None
    reports_read: int = 0  # bounce reports matched to sent email, in all
    error: dict[str, Any] | None = None  # the classified failure of the last read


class SettingsView(BaseModel):
    """Settings as GET and PUT return them: never the password or a token, only whether one is saved."""

    profile: Profile
    transport: TransportKind
    auth: AuthKind = "password"
    oauth: OAuthInfo | None = None
    provider: str | None = None
    host: str | None = None
    port: int | None = None
    security: Security | None = None
    username: str | None = None
    password_set: bool = False
    from_name: str | None = None
    from_email: str
    bcc: str | None = None
    reply_to: str | None = None
    notify_email: str | None = None
    timezone: str | None = None
    send_time: str | None = None  # company: its daily runs' local time, 12:00 when never set
    ses_region: str | None = None
    ses_configuration_set: str | None = None
    limits: LimitsInput = Field(default_factory=LimitsInput)  # as saved: null = the preset's
    limits_in_effect: LimitsInput | None = None  # the saved ones with the preset's defaults filled in
    usage: Usage | None = None  # GET only
    pipelining: bool = True
    track_opens: bool = False
    read_bounces: bool = False
    imap_host: str | None = None  # as saved (null = the preset's)
    imap_port: int | None = None
    bounce_reading: BounceReading | None = None  # GET only, once read_bounces is on
    updated_at: str | None = None
    updated_by: str | None = None
    warnings: list[SettingsWarning] = Field(default_factory=list)

    @field_validator("limits", mode="before")
    @classmethod
    def _no_limits_saved(cls, value: Any) -> Any:
        return {} if value is None else value  # settings saved before budgets existed

    @field_validator("track_opens", "read_bounces", mode="before")
    @classmethod
    def _off_unless_saved(cls, value: Any) -> Any:
        return False if value is None else value  # saved before tracking existed, or not given

    @field_validator("pipelining", mode="before")
    @classmethod
    def _on_unless_switched_off(cls, value: Any) -> Any:
        return True if value is None else value


STORED_FIELDS = (
    "transport",
    "provider",
    "host",
    "port",
    "security",
    "username",
    "from_name",
    "from_email",
    "bcc",
    "reply_to",
    "notify_email",
    "timezone",
    "send_time",
    "ses_region",
    "ses_configuration_set",
    "limits",
    "pipelining",
    "track_opens",
    "read_bounces",
    "imap_host",
    "imap_port",
)
# What PUT may change on an OAuth profile without connecting it again, and what the connection fixes.
OAUTH_EDITABLE = (
    "from_name",
    "from_email",
    "bcc",
    "reply_to",
    "notify_email",
    "timezone",
    "send_time",
    "limits",
    "track_opens",
    "read_bounces",
    "imap_host",
    "imap_port",
)
OAUTH_FIXED = tuple(name for name in STORED_FIELDS if name not in OAUTH_EDITABLE)


def settings_warnings(view: SettingsView) -> list[SettingsWarning]:
    """Legal but doubtful combinations, shown to the user, never blocking a save."""
    found: list[SettingsWarning] = []

    def warn(name: str, message: str) -> None:
        found.append(SettingsWarning(field=name, message=message))

    warn_basic_auth_ending(view, warn)
    if view.transport == "smtp":
        if view.port == 465 and view.security != "ssl":
            warn("security", "Port 465 expects TLS from the first byte: choose ssl for this port.")
        if view.security == "ssl" and view.port in (25, 587, 2525):
            warn("security", f"Port {view.port} usually starts in clear text: choose starttls for it.")
        if view.security == "none" and (view.username or view.password_set):
            warn(
                "security",
                "With security none the password is never sent, so sign-in will fail: "
                "choose starttls or ssl.",
            )
        if view.security == "opportunistic" and view.username:
            warn(
                "security",
                "If the server does not offer STARTTLS, sending stops rather than expose the "
                "password; starttls states that requirement plainly.",
            )
        if view.port == 25:
            warn("port", "Many networks, AWS Lambda included, block outgoing port 25: prefer 587.")
        preset = PROVIDERS.get(view.provider or "")
        if preset and view.host and view.host != preset.host:
            warn("host", f"The {preset.name} preset uses {preset.host}, not {view.host}.")
        if view.username and "@" in view.username:
            user_domain = view.username.rsplit("@", 1)[1].casefold()
            from_domain = view.from_email.rsplit("@", 1)[1].casefold()
            if user_domain != from_domain:
                warn(
                    "from_email",
                    "The From address is on another domain than the sign-in account: the server "
                    "may refuse it unless the account may send as that address.",
                )
        if view.username and not view.password_set and view.auth == "password":
            warn("password", "No password is saved for this account.")
    if not view.from_name:
        warn("from_name", "Without a From name, recipients see only the bare address.")
    return found


MICROSOFT_SMTP_HOSTS = ("smtp.office365.com", "smtp-mail.outlook.com")
GOOGLE_SMTP_HOSTS = ("smtp.gmail.com",)


def warn_basic_auth_ending(view: SettingsView, warn: Callable[[str, str], None]) -> None:
    """Password sign-in at Microsoft 365 and Gmail: say what is changing and what to use instead."""
    if view.transport != "smtp" or view.auth != "password" or not view.username:
        return
    if view.host in MICROSOFT_SMTP_HOSTS:
        warn(
            "auth",
            "Microsoft turns SMTP basic authentication (a password) off by default at the end of "
            "December 2026, and new tenants never have it. Connect the account instead: "
            "POST /oauth/microsoft/start.",
        )
    elif view.host in GOOGLE_SMTP_HOSTS:
        warn(
            "auth",
            "Gmail takes only an app password here, which needs 2-Step Verification and may be "
            "turned off by your organisation. Connecting the Google account needs no password: "
            "POST /oauth/google/start.",
        )
