"""Reading, saving and deleting email settings, with the password kept in Secrets Manager."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from mailer.dal import keys
from mailer.dal.bounce_reads import BounceReadStore
from mailer.dal.secret_store import SecretStore
from mailer.dal.settings_table import SettingsStore
from mailer.delivery.guard import AddressGuard, AddressNotAllowed
from mailer.delivery.providers import PROVIDERS
from mailer.errors import Conflict, FieldError, Forbidden, InvalidInput, MailerError, NotFound
from mailer.identity import Caller
from mailer.ids import utc_now
from mailer.settings.budget import SendingBudgets
from mailer.settings.models import (
    OAUTH_EDITABLE,
    OAUTH_FIXED,
    STORED_FIELDS,
    BounceReading,
    Profile,
    SettingsInput,
    SettingsView,
    SettingsWarning,
    settings_warnings,
)
from mailer.settings.oauth import OAuthProvider, OAuthProviders
from mailer.settings.schedule import SendSchedule
from mailer.settings.send_time import DEFAULT_SEND_TIME
from mailer.settings.tokens import Grant, TokenSource


@dataclass(frozen=True)
class ProfileRef:
    """Which settings item a profile means for this caller."""

    tenant_id: str
    profile: Profile
    key: str  # "company" or "user/<sub>"; also names the secret

    @property
    def sort_key(self) -> str:
        return keys.settings_sk(self.key)


@dataclass(frozen=True)
class Connection:
    """A new OAuth connection, as the callback hands it to the settings."""

    grant: Grant
    info: dict[str, Any]  # the `oauth` block of the profile
    settings: dict[str, Any] = field(
        default_factory=dict
    )  # transport, provider, host, port, security, username


def account_of(settings: SettingsView | SettingsInput | dict[str, Any]) -> tuple[str, int | None, str]:
    """What a saved password is bound to: host, port and username."""
    get = settings.get if isinstance(settings, dict) else lambda name: getattr(settings, name)
    return (str(get("host") or "").lower(), get("port"), str(get("username") or "").casefold())


def profile_ref(caller: Caller, profile: Profile) -> ProfileRef:
    key = "company" if profile == "company" else f"user/{caller.user_id}"
    return ProfileRef(caller.tenant_id, profile, key)


@dataclass
class SendingProfile:
    """Saved or unsaved settings ready to send with, and where the password comes from."""

    settings: SettingsView
    password_source: Callable[[bool], str | None]
    password_cached: bool
    tokens: TokenSource | None = None  # OAuth profiles: access tokens instead of a password
    tenant_id: str | None = None  # whose sending budget it counts against

    def password(self, *, force_fetch: bool = False) -> str | None:
        return self.password_source(force_fetch)


class SettingsService:
    def __init__(
        self,
        store: SettingsStore,
        secrets: SecretStore,
        clock: Callable[[], str] = utc_now,
        *,
        oauth: OAuthProviders | None = None,
        guard: AddressGuard | None = None,
        budgets: SendingBudgets | None = None,
        schedule: SendSchedule | None = None,
        bounce_reads: BounceReadStore | None = None,
    ) -> None:
        self.store = store
        self.bounce_reads = bounce_reads  # where each mailbox's bounce reading stands
        self.schedule = schedule
        self.budgets = budgets or SendingBudgets(None)
        self.guard = guard or AddressGuard()
        self.secrets = secrets
        self.clock = clock
        self.oauth = oauth
        self.on_reconnect_required: Callable[[ProfileRef, SettingsView], None] | None = None

    def _keep_schedule(self, ref: ProfileRef, item: dict[str, Any]) -> None:
        """The company's next run at its send time and time zone, written before the settings, so
        settings that are saved always have their schedule (a failure saves neither)."""
        if ref.profile == "company" and self.schedule is not None:
            self.schedule.keep(ref.tenant_id, item.get("timezone"), item.get("send_time"))
        self._keep_bounce_reading(ref, item)

    def _keep_bounce_reading(self, ref: ProfileRef, item: dict[str, Any]) -> None:
        """A profile that reads bounce reports is listed for the reader (its cursor kept), one
        that does not is taken off; refused (422) when there is no mailbox to read."""
        if self.bounce_reads is None:
            return
        if not item.get("read_bounces"):
            self.bounce_reads.disable(ref.tenant_id, ref.key)
            return
        if item.get("transport") == "ses":
            raise InvalidInput.on(
                "read_bounces", "Amazon SES reports bounces as events (the stack's configuration set)"
            )
        preset = PROVIDERS.get(item.get("provider") or "")
        host = item.get("imap_host") or (preset.imap_host if preset else None)
        if not host:
            raise InvalidInput.on(
                "imap_host", "required to read bounce reports: the provider has no known IMAP server"
            )
        try:
            self.guard.check_host(host)
        except AddressNotAllowed as exc:
            raise InvalidInput.on(
                "imap_host",
                f"is, or resolves to, an internal address ({exc.address}); only public mail servers are used",
            ) from None
        self.bounce_reads.enable(ref.tenant_id, ref.key)

    def may_write(self, caller: Caller, profile: Profile) -> bool:
        return profile == "me" or caller.is_admin

    def _view(self, ref: ProfileRef, item: dict[str, Any]) -> SettingsView:
        view = SettingsView.model_validate(
            {k: item.get(k) for k in (*STORED_FIELDS, "password_set", "updated_at", "updated_by", "oauth")}
            | {"profile": ref.profile, "auth": item.get("auth") or "password"}
        )
        if ref.profile == "company" and view.send_time is None:
            view.send_time = DEFAULT_SEND_TIME
        view.warnings = settings_warnings(view)
        view.limits_in_effect = SendingBudgets.shown(view)
        return view

    def get(self, caller: Caller, profile: Profile) -> SettingsView:
        ref = profile_ref(caller, profile)
        item = self.store.get(ref.tenant_id, ref.sort_key)
        if item is None:
            raise NotFound(f"No {profile} email settings are saved yet.")
        return self._view(ref, item)

    def describe(self, caller: Caller, profile: Profile) -> SettingsView:
        """The settings as GET shows them: with the account's usage of its sending budget."""
        return self.with_usage(caller, self.get(caller, profile))

    def with_usage(self, caller: Caller, view: SettingsView) -> SettingsView:
        view.usage = self.budgets.usage(caller.tenant_id, view)
        if view.read_bounces and self.bounce_reads is not None:
            ref = profile_ref(caller, view.profile)
            read = self.bounce_reads.get(ref.tenant_id, ref.key)
            preset = PROVIDERS.get(view.provider or "")
            host = view.imap_host or (preset.imap_host if preset else None)
            port = view.imap_port or (preset.imap_port if preset else 993)
            view.bounce_reading = BounceReading(
                status=read.status if read else "pending",  # type: ignore[arg-type]
                imap_host=host,
                imap_port=port,
                checked_at=read.checked_at if read else None,
                reports_read=read.reports_read if read else 0,
                error=read.error if read else None,
            )
        return view

    def save(self, caller: Caller, profile: Profile, data: SettingsInput) -> SettingsView:
        if not self.may_write(caller, profile):
            raise Forbidden("Only an administrator can change the company email settings.")
        ref = profile_ref(caller, profile)
        existing = self.store.get(ref.tenant_id, ref.sort_key) or {}
        replaces_grant = existing.get("auth") == "oauth"
        if replaces_grant:
            if data.auth != "password" and data.password is None:
                return self._save_oauth_fields(caller, ref, existing, data)
            self._revoke(ref, existing)  # a password replaces the connection
            existing = {}
        data.check(profile, password_saved=bool(existing.get("password_set")))
        if data.password is None and existing.get("password_set") and data.username:
            if account_of(existing) != account_of(data):
                raise InvalidInput.on(
                    "password",
                    "required again: the saved password was for another host, port or username, "
                    "and is never sent anywhere else",
                )
        host_warning = self._check_host(data)
        secret_name = self.secrets.name_for(ref.tenant_id, ref.key)
        needs_password = data.transport == "smtp" and bool(data.username)
        if not needs_password:
            if existing.get("password_set"):
                self.secrets.delete(secret_name)
            password_set = False
        elif data.password is not None:
            self.secrets.put(secret_name, data.password.get_secret_value())
            password_set = True
        else:
            password_set = bool(existing.get("password_set"))
        if replaces_grant and not password_set:
            self.secrets.delete(secret_name)  # the grant must not outlive its connection
        item = data.model_dump(include=set(STORED_FIELDS)) | {
            "password_set": password_set,
            "updated_at": self.clock(),
            "updated_by": caller.email or caller.user_id,
        }
        self._keep_schedule(ref, item)
        self.store.put(ref.tenant_id, ref.sort_key, item)
        view = self._view(ref, item)
        if host_warning:
            view.warnings.insert(0, host_warning)
        return view

    def _check_host(self, data: SettingsInput) -> SettingsWarning | None:
        """An internal mail host is refused; one that does not resolve now is saved with a warning."""
        if data.transport != "smtp" or not data.host:
            return None
        try:
            unresolved = self.guard.check_host(data.host)
        except AddressNotAllowed as exc:
            raise InvalidInput.on(
                "host",
                f"is, or resolves to, an internal address ({exc.address}); only public mail servers are "
                "used (an operator admits an on-premises relay with MAILER_ALLOWED_NETWORKS)",
            ) from None
        if unresolved:
            return SettingsWarning(
                field="host", message=f"{data.host} does not resolve now; sending fails until it does."
            )
        return None

    def delete(self, caller: Caller, profile: Profile) -> None:
        if not self.may_write(caller, profile):
            raise Forbidden("Only an administrator can delete the company email settings.")
        ref = profile_ref(caller, profile)
        item = self.store.get(ref.tenant_id, ref.sort_key)
        if item is None:
            raise NotFound(f"No {profile} email settings are saved.")
        if item.get("auth") == "oauth":
            self._revoke(ref, item)
        self.secrets.delete(self.secrets.name_for(ref.tenant_id, ref.key))
        if self.bounce_reads is not None:
            self.bounce_reads.disable(ref.tenant_id, ref.key)
        self.store.delete(ref.tenant_id, ref.sort_key)

    def saved_profile(self, caller: Caller, profile: Profile) -> SendingProfile:
        view = self.get(caller, profile)
        ref = profile_ref(caller, profile)
        return self._sending_profile(ref, view)

    def _sending_profile(self, ref: ProfileRef, view: SettingsView) -> SendingProfile:
        tenant = ref.tenant_id
        if view.auth == "oauth" and view.oauth is not None:
            return SendingProfile(
                view,
                lambda _force: None,
                password_cached=False,
                tokens=self.tokens(ref, view),
                tenant_id=tenant,
            )
        if not view.password_set:
            return SendingProfile(view, lambda _force: None, password_cached=False, tenant_id=tenant)
        name = self.secrets.name_for(ref.tenant_id, ref.key)
        return SendingProfile(
            view,
            lambda force: self.secrets.get(name, force_fetch=force),
            password_cached=True,
            tenant_id=tenant,
        )

    def unsaved_profile(
        self, caller: Caller, data: SettingsInput, lend_from: Profile | None
    ) -> SendingProfile:
        """Settings from the request; a missing password may be lent by a profile the caller may write."""
        lender: SettingsView | None = None
        if data.password is None and data.username and lend_from is not None:
            if not self.may_write(caller, lend_from):
                raise Forbidden("Only an administrator can test with the saved company password.")
            lender = self.get(caller, lend_from)
            if lender.auth != "password" or account_of(lender) != account_of(data):
                raise InvalidInput.on(
                    "password",
                    f"required: the saved {lend_from} password is only used with the host, port and "
                    "username it was saved for",
                )
        target: Profile = lend_from or "me"
        data.check(target, password_saved=bool(lender and lender.password_set))
        view = SettingsView.model_validate(data.model_dump(include=set(STORED_FIELDS)) | {"profile": target})
        view.password_set = data.password is not None or bool(lender and lender.password_set)
        tenant = caller.tenant_id
        if data.password is not None:
            password = data.password.get_secret_value()
            return SendingProfile(view, lambda _force: password, password_cached=False, tenant_id=tenant)
        if lender is not None and lend_from is not None:
            return self._sending_profile(profile_ref(caller, lend_from), view)
        return SendingProfile(view, lambda _force: None, password_cached=False, tenant_id=tenant)

    # OAuth profiles
    def tokens(self, ref: ProfileRef, view: SettingsView) -> TokenSource:
        assert view.oauth is not None
        provider = self.oauth_provider(view.oauth.provider)
        name = self.secrets.name_for(ref.tenant_id, ref.key)
        return TokenSource(
            self.secrets, name, provider, on_revoked=lambda: self._reconnect_required(ref, view)
        )

    def oauth_provider(self, name: str) -> OAuthProvider:
        if self.oauth is None:
            raise Conflict("OAuth is not configured for this function.")
        try:
            return self.oauth.get(name)
        except ValueError as exc:
            raise Conflict(f"{exc}; the operator sets it in the stack's parameters.") from None

    def save_connection(self, caller: Caller, profile: Profile, connection: Connection) -> SettingsView:
        """The callback's last step: the grant in the profile's secret, the profile as an OAuth one.

        Wording fields the profile already had (From name, BCC, Reply-To, notify address, time
        zone) are kept; the From address becomes the connected account."""
        ref = profile_ref(caller, profile)
        existing = self.store.get(ref.tenant_id, ref.sort_key) or {}
        name = self.secrets.name_for(ref.tenant_id, ref.key)
        if existing.get("auth") == "oauth":
            self._revoke(ref, existing)
        # A new version over the old password or grant: the secret is never deleted and remade here,
        # because Secrets Manager refuses to remake a name for a while after a forced deletion.
        self.secrets.put_version(name, connection.grant.dumps(), connection.grant.version_token(name))
        kept_fields = ("from_name", "bcc", "reply_to", "notify_email", "timezone", "send_time")
        kept = {k: existing.get(k) for k in kept_fields}
        if kept["bcc"] and kept["bcc"].casefold() == connection.grant.account.casefold():
            kept["bcc"] = None
        item = (
            connection.settings
            | kept
            | {
                "auth": "oauth",
                "from_email": connection.grant.account,
                "password_set": False,
                "oauth": connection.info,
                "updated_at": self.clock(),
                "updated_by": caller.email or caller.user_id,
            }
        )
        self._keep_schedule(ref, item)
        self.store.put(ref.tenant_id, ref.sort_key, item)
        return self._view(ref, item)

    def _save_oauth_fields(
        self, caller: Caller, ref: ProfileRef, existing: dict[str, Any], data: SettingsInput
    ) -> SettingsView:
        """PUT on an OAuth profile: the wording fields change, the connection stays."""
        errors = data.common_errors(ref.profile)
        for name in OAUTH_FIXED:
            if name in data.given and getattr(data, name) != existing.get(name):
                errors.append(
                    FieldError(name, "is set by the OAuth connection: connect again, or send auth: password")
                )
        if errors:
            raise InvalidInput("The settings are not valid.", errors=errors)
        item = (
            dict(existing)
            | data.model_dump(include=set(OAUTH_EDITABLE))
            | {
                "updated_at": self.clock(),
                "updated_by": caller.email or caller.user_id,
            }
        )
        self._keep_schedule(ref, item)
        self.store.put(ref.tenant_id, ref.sort_key, {k: v for k, v in item.items() if k not in ("pk", "sk")})
        return self._view(ref, item)

    def _revoke(self, ref: ProfileRef, item: dict[str, Any]) -> None:
        name = self.secrets.name_for(ref.tenant_id, ref.key)
        provider_name = (item.get("oauth") or {}).get("provider")
        try:
            grant = Grant.loads(self.secrets.get(name, force_fetch=True))
        except MailerError:
            grant = None
        if grant is not None and provider_name and self.oauth is not None:
            with suppress(ValueError):
                self.oauth.get(provider_name).revoke(grant.refresh_token)

    def _reconnect_required(self, ref: ProfileRef, view: SettingsView) -> None:
        """Mark the profile once; only the request that changed the mark tells the company."""
        if self.store.set_oauth_status(
            ref.tenant_id, ref.sort_key, "reconnect_required", expected="connected"
        ):
            if self.on_reconnect_required is not None:
                self.on_reconnect_required(ref, view)
