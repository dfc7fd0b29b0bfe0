"""Sending budgets per sending account: per minute, per day and connections at once.

The limits of an account are its saved `limits`, each null filled in from the provider preset
(`mailer.delivery.providers`). They hold across every concurrent function because the counting is
done in DynamoDB (`mailer.dal.budget_table`): an interactive send over budget is refused with 429
and Retry-After, nothing sent; the outbox worker defers automated mail instead.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from mailer.dal.budget_table import (
    BudgetStore,
    Take,
    seconds_to_next_day,
    seconds_to_next_minute,
)
from mailer.delivery.providers import (
    GMAIL_API_LIMITS,
    MICROSOFT_GRAPH_LIMITS,
    NO_LIMITS,
    PROVIDERS,
    SendingLimits,
    provider_for_host,
)
from mailer.errors import TooManyRequests
from mailer.settings.models import LimitsInput, SettingsView, Usage

LIMIT_WORDS = {
    "per_minute": "messages a minute",
    "per_day": "recipients a day",
    "connections": "connections at once",
}


def preset_limits(view: SettingsView) -> SendingLimits:
    """The provider's defaults for this account: by transport, else by preset, else by host."""
    if view.transport == "microsoft_graph":
        return MICROSOFT_GRAPH_LIMITS
    if view.transport == "gmail_api":
        return GMAIL_API_LIMITS
    if view.transport == "ses":
        return NO_LIMITS  # SES enforces the account's own quota and rate, and says so when passed
    preset = PROVIDERS.get(view.provider or "") or provider_for_host(view.host)
    return preset.limits if preset else NO_LIMITS


def limits_in_effect(view: SettingsView) -> SendingLimits:
    saved, preset = view.limits, preset_limits(view)
    return SendingLimits(
        per_minute=saved.per_minute if saved.per_minute is not None else preset.per_minute,
        per_day=saved.per_day if saved.per_day is not None else preset.per_day,
        connections=saved.connections if saved.connections is not None else preset.connections,
    )


def account_id(tenant_id: str, view: SettingsView) -> str:
    """Who the provider counts: the mailbox (an OAuth account, a username at a host) or the SES
    region and sender. Two profiles on one mailbox share one budget."""
    if view.transport in ("microsoft_graph", "gmail_api") and view.oauth is not None:
        who = f"{view.transport}|{view.oauth.account.casefold()}"
    elif view.transport == "ses":
        who = f"ses|{view.ses_region}|{view.from_email.casefold()}"
    else:
        who = f"smtp|{(view.host or '').lower()}|{(view.username or view.from_email).casefold()}"
    digest = hashlib.sha256(who.encode()).hexdigest()[:32]
    return f"{tenant_id}#{digest}"


def over_budget(limit: str, limits: SendingLimits, retry_after: int) -> TooManyRequests:
    amount = getattr(limits, limit)
    return TooManyRequests(
        f"This account's sending limit of {amount} {LIMIT_WORDS[limit]} is reached; nothing was sent. "
        f"Try again in {retry_after} s, or raise the limit under limits.{limit} in the settings.",
        limit=limit,
        retry_after=retry_after,
    )


@dataclass(frozen=True)
class Admission:
    """Of some sends, the first `count` may go now; the rest in `retry_after` seconds."""

    count: int
    retry_after: int = 0


@dataclass
class Lease:
    """One connection slot held for an open connection; `release` gives it back."""

    budgets: SendingBudgets
    account: str
    slot: int
    owner: str
    released: bool = False

    def release(self) -> None:
        if not self.released and self.budgets.store is not None:
            self.released = True
            self.budgets.store.release(self.account, self.slot, self.owner)


@dataclass
class SendingBudgets:
    """The budgets of every account; without a store (a function without BUDGET_TABLE) none holds."""

    store: BudgetStore | None
    clock: Callable[[], float] = time.time
    owner_prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def take(self, tenant_id: str, view: SettingsView, recipients: int, messages: int = 1) -> None:
        """Count a send against the account's budget; TooManyRequests (nothing counted) when over."""
        if self.store is None:
            return
        now = self.clock()
        limits = limits_in_effect(view)
        refused = self.store.take(
            account_id(tenant_id, view), Take(messages, recipients), limits.per_minute, limits.per_day, now
        )
        if refused is not None:
            wait = seconds_to_next_minute(now) if refused.limit == "per_minute" else seconds_to_next_day(now)
            raise over_budget(refused.limit, limits, wait)

    def admit(self, tenant_id: str, view: SettingsView, recipients: list[int]) -> Admission:
        """How many of these sends, in order, fit the budget now (those are counted), and when to try
        the rest. One call when all fit; else one read and one more take."""
        if self.store is None or not recipients:
            return Admission(len(recipients))
        try:
            self.take(tenant_id, view, sum(recipients), len(recipients))
            return Admission(len(recipients))
        except TooManyRequests as exc:
            return Admission(self._what_fits(tenant_id, view, recipients), exc.retry_after)

    def _what_fits(self, tenant_id: str, view: SettingsView, recipients: list[int]) -> int:
        assert self.store is not None
        limits = limits_in_effect(view)
        minute, today = self.store.usage(account_id(tenant_id, view), self.clock())
        fits = 0
        messages_room = (limits.per_minute - minute) if limits.per_minute is not None else len(recipients)
        recipients_room = (limits.per_day - today) if limits.per_day is not None else sum(recipients)
        for count in recipients:
            if fits + 1 > messages_room or count > recipients_room:
                break
            fits += 1
            recipients_room -= count
        if fits == 0:
            return 0
        try:
            self.take(tenant_id, view, sum(recipients[:fits]), fits)
        except TooManyRequests:
            return 0  # another function took the room meanwhile
        return fits

    def lease(self, tenant_id: str, view: SettingsView, seconds: float) -> Lease | None:
        """Hold a connection slot for `seconds` at most; None when the account has no connection
        limit; TooManyRequests when every slot is held."""
        limits = limits_in_effect(view)
        if self.store is None or limits.connections is None:
            return None
        account = account_id(tenant_id, view)
        owner = f"{self.owner_prefix}-{uuid.uuid4().hex[:8]}"
        now = self.clock()
        slot = self.store.lease(account, limits.connections, owner, seconds, now)
        if slot is None:
            first_free = self.store.lease_expiry(account)
            wait = int(first_free - now) + 1 if first_free else 5
            raise over_budget("connections", limits, min(max(wait, 1), int(seconds) + 1))
        return Lease(self, account, slot, owner)

    @contextmanager
    def connection(self, tenant_id: str, view: SettingsView, seconds: float) -> Iterator[None]:
        lease = self.lease(tenant_id, view, seconds)
        try:
            yield
        finally:
            if lease is not None:
                lease.release()

    def usage(self, tenant_id: str, view: SettingsView) -> Usage | None:
        if self.store is None:
            return None
        minute, today = self.store.usage(account_id(tenant_id, view), self.clock())
        return Usage(last_minute=minute, today=today)

    @staticmethod
    def shown(view: SettingsView) -> LimitsInput:
        effective = limits_in_effect(view)
        return LimitsInput(
            per_minute=effective.per_minute, per_day=effective.per_day, connections=effective.connections
        )
