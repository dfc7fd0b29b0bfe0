"""Reading, saving and deleting email settings, with the password kept in Secrets Manager."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailer.dal import keys
from mailer.dal.secret_store import SecretStore
from mailer.dal.settings_table import SettingsStore
from mailer.errors import Forbidden, NotFound
from mailer.identity import Caller
from mailer.ids import utc_now
from mailer.settings.models import (
    STORED_FIELDS,
    Profile,
    SettingsInput,
    SettingsView,
    settings_warnings,
)


@dataclass(frozen=True)
class ProfileRef:
    """Which settings item a profile means for this caller."""

    tenant_id: str
    profile: Profile
    key: str  # "company" or "user/<sub>"; also names the secret

    @property
    def sort_key(self) -> str:
        return keys.settings_sk(self.key)


def profile_ref(caller: Caller, profile: Profile) -> ProfileRef:
    key = "company" if profile == "company" else f"user/{caller.user_id}"
    return ProfileRef(caller.tenant_id, profile, key)


@dataclass
class SendingProfile:
    """Saved or unsaved settings ready to send with, and where the password comes from."""

    settings: SettingsView
    password_source: Callable[[bool], str | None]
    password_cached: bool

    def password(self, *, force_fetch: bool = False) -> str | None:
        return self.password_source(force_fetch)


class SettingsService:
    def __init__(
        self, store: SettingsStore, secrets: SecretStore, clock: Callable[[], str] = utc_now
    ) -> None:
        self.store = store
        self.secrets = secrets
        self.clock = clock

    def may_write(self, caller: Caller, profile: Profile) -> bool:
        return profile == "me" or caller.is_admin

    def _view(self, ref: ProfileRef, item: dict[str, Any]) -> SettingsView:
        view = SettingsView.model_validate(
            {k: item.get(k) for k in (*STORED_FIELDS, "password_set", "updated_at", "updated_by")}
            | {"profile": ref.profile}
        )
        view.warnings = settings_warnings(view)
        return view

    def get(self, caller: Caller, profile: Profile) -> SettingsView:
        ref = profile_ref(caller, profile)
        item = self.store.get(ref.tenant_id, ref.sort_key)
        if item is None:
            raise NotFound(f"No {profile} email settings are saved yet.")
        return self._view(ref, item)

    def save(self, caller: Caller, profile: Profile, data: SettingsInput) -> SettingsView:
        if not self.may_write(caller, profile):
            raise Forbidden("Only an administrator can change the company email settings.")
        ref = profile_ref(caller, profile)
        existing = self.store.get(ref.tenant_id, ref.sort_key) or {}
        data.check(profile, password_saved=bool(existing.get("password_set")))
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
        item = data.model_dump(include=set(STORED_FIELDS)) | {
            "password_set": password_set,
            "updated_at": self.clock(),
            "updated_by": caller.email or caller.user_id,
        }
        self.store.put(ref.tenant_id, ref.sort_key, item)
        return self._view(ref, item)

    def delete(self, caller: Caller, profile: Profile) -> None:
        if not self.may_write(caller, profile):
            raise Forbidden("Only an administrator can delete the company email settings.")
        ref = profile_ref(caller, profile)
        item = self.store.get(ref.tenant_id, ref.sort_key)
        if item is None:
            raise NotFound(f"No {profile} email settings are saved.")
        self.secrets.delete(self.secrets.name_for(ref.tenant_id, ref.key))
        self.store.delete(ref.tenant_id, ref.sort_key)

    def saved_profile(self, caller: Caller, profile: Profile) -> SendingProfile:
        view = self.get(caller, profile)
        ref = profile_ref(caller, profile)
        return self._sending_profile(ref, view)

    def _sending_profile(self, ref: ProfileRef, view: SettingsView) -> SendingProfile:
        if not view.password_set:
            return SendingProfile(view, lambda _force: None, password_cached=False)
        name = self.secrets.name_for(ref.tenant_id, ref.key)
        return SendingProfile(
            view, lambda force: self.secrets.get(name, force_fetch=force), password_cached=True
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
        target: Profile = lend_from or "me"
        data.check(target, password_saved=bool(lender and lender.password_set))
        view = SettingsView.model_validate(data.model_dump(include=set(STORED_FIELDS)) | {"profile": target})
        view.password_set = data.password is not None or bool(lender and lender.password_set)
        if data.password is not None:
            password = data.password.get_secret_value()
            return SendingProfile(view, lambda _force: password, password_cached=False)
        if lender is not None and lend_from is not None:
            return self._sending_profile(profile_ref(caller, lend_from), view)
        return SendingProfile(view, lambda _force: None, password_cached=False)
