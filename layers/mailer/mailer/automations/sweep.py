"""The claim sweep: automated email claimed in the ledger whose outcome was never recorded.

A worker that dies between the send and the ledger update leaves its claim `sending`. The send may
have happened, so it is never tried again; the sweep makes it visible instead. For each claim older
than the outbox queue's visibility timeout (no invocation can still be working on it) it writes an
`unknown` sent-log entry, turns the claim `unknown`, and tells the company's notification address
once.

The worker writes a send's sent-log entry before its ledger outcome, so a worker that stopped in
between left the outcome in the sent log: a `sent` or `failed` entry of the claim's automation for
its work order, made after the claim. The sweep looks there first (`recorded_outcome`), and when it
finds one it finishes the claim with that outcome instead: no `unknown` entry, no notice.

The entry's id comes from the claim (its time, then a hash of the ledger key, in the layout of
`mailer.ids.new_id`): it sorts among the sent log's entries at the time of the attempt, and a sweep
that stops after the entry and runs again writes the same entry again, not a second one. Only the
sweep whose `mark_unknown` succeeds sends the notice, so two sweeps, or one run twice, tell the
company once.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mailer.automations.compose import label_of, system_caller
from mailer.automations.notice import unknown_notice
from mailer.config import MailerConfig
from mailer.dal.ledger_table import Finish, LedgerKey, LedgerStore
from mailer.dal.sent_log_table import SentLogStore
from mailer.dal.work_orders_table import WorkOrderStore
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.errors import MailerError, NotFound, ServiceUnavailable
from mailer.ids import new_id
from mailer.sent_log.models import SentLogEntry
from mailer.settings.sending import TransportPool
from mailer.settings.service import SendingProfile, SettingsService
from mailer.work_orders.models import Customer, WorkOrder

SWEEP_LIMIT = 200  # claims handled a run; the rest wait for the next run, a quarter of an hour later

UNKNOWN = Failure(
    stage="send",
    category="unknown",
    transient=False,
    hint="The sending stopped before its outcome was recorded, so this email may have been sent. "
    "It will not be sent again automatically: check with the customer before sending it by hand.",
)


_BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's, as mailer.ids uses
RECORDED = ("sent", "failed")  # the outcomes a worker writes to the sent log


def unknown_entry_id(key: LedgerKey, claimed_at: int) -> str:
    """The sent-log id of a claim's `unknown` entry, the same every run: `new_id`'s layout, with the
    claim's time (so it sorts where the attempt happened) and 80 bits of the key's hash in place of
    the random ones."""
    value = int.from_bytes(hashlib.sha256("\x1f".join(key).encode()).digest()[:10])
    chars = []
    for _ in range(16):
        value, index = divmod(value, 32)
        chars.append(_BASE32[index])
    return new_id(claimed_at * 1000)[:10] + "".join(reversed(chars))


def epoch_seconds(stored: str) -> int:
    """A stored time (ISO 8601, UTC, `Z`) as epoch seconds."""
    return int(datetime.fromisoformat(stored.replace("Z", "+00:00")).timestamp())


def iso_time(seconds: int) -> str:
    """Epoch seconds as stored: ISO 8601 in UTC with a Z."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def recorded_outcome(
    entries: Iterable[SentLogEntry], automation: str, claimed_at: int, window_seconds: int
) -> SentLogEntry | None:
    """Of one work order's sent-log entries, the outcome the claim's own worker wrote: the earliest
    `sent` or `failed` entry of `automation` made within `window_seconds` (the stale threshold: no
    invocation lasts longer) from `claimed_at`. None when there is none: the outcome is unknown."""
    found = [
        entry
        for entry in entries
        if entry.kind == "automation"
        and entry.automation == automation
        and entry.status in RECORDED
        and claimed_at <= epoch_seconds(entry.created_at) <= claimed_at + window_seconds
    ]
    return min(found, key=lambda entry: entry.id, default=None)


@dataclass(frozen=True)
class Claim:
    """A stale claim with what the sweep read about it: the work order and the customer its email
    went to (the parent's for a multi-day work order), None when the work order is gone; the
    company's sending profile, None when the company has no settings."""

    key: LedgerKey
    claimed_at: int
    work_order: WorkOrder | None
    contact: Customer | None
    company: SendingProfile | None

    @property
    def tenant_id(self) -> str:
        return self.key[0]

    @property
    def automation(self) -> str:
        return self.key[1]

    @property
    def work_order_id(self) -> str:
        return self.key[2]

    @property
    def number(self) -> str:
        return self.work_order.number if self.work_order else self.work_order_id

    @property
    def recipient(self) -> str | None:
        return self.contact.email if self.contact else None


def unknown_entry(claim: Claim) -> SentLogEntry:
    """What the sent log shows for a claim whose outcome is unknown."""
    label = label_of(claim.automation)
    return SentLogEntry.model_validate(
        {
            "id": unknown_entry_id(claim.key, claim.claimed_at),
            "kind": "automation",
            "status": "unknown",
            "from": claim.company.settings.from_email if claim.company else "",
            "to": [claim.recipient] if claim.recipient else [],
            "subject": f"{label[:1].upper()}{label[1:]} for {claim.number}",
            "profile": "company",
            "work_order_id": claim.work_order_id,
            "automation": claim.automation,
            "error": UNKNOWN.as_dict(),
            "created_at": iso_time(claim.claimed_at),  # the attempt's time, as the id says
        }
    )


@dataclass
class ClaimSweep:
    config: MailerConfig
    settings: SettingsService
    work_orders: WorkOrderStore
    ledger: LedgerStore
    sent_log: SentLogStore
    logger: Any
    clock: Callable[[], float] = time.time  # what `run` takes as now when not given one
    _profiles: dict[str, SendingProfile | None] = field(default_factory=dict)

    def run(self, now: int | None = None) -> dict[str, int]:
        """Report every claim made before `now` minus the stale threshold: `found` claims read,
        `finished` with the outcome the sent log already had, `marked` turned unknown by this run,
        `notified` notices delivered, `deferred` left for the next run because something could not
        be read or written."""
        cutoff = int(self.clock() if now is None else now) - self.config.stale_claim_seconds
        counts = {"found": 0, "finished": 0, "marked": 0, "notified": 0, "deferred": 0}
        self._profiles.clear()
        with TransportPool(self.config) as pool:
            for key, claimed_at in self.ledger.stale_claims(cutoff, SWEEP_LIMIT):
                counts["found"] += 1
                try:
                    if self._finish_recorded(key, claimed_at):
                        counts["finished"] += 1
                        continue
                    claim = self._read(key, claimed_at)
                    self.sent_log.put(claim.tenant_id, unknown_entry(claim))
                    if not self.ledger.mark_unknown(key, cutoff):
                        continue  # finished meanwhile, or marked by another run that tells the company
                except MailerError as exc:
                    counts["deferred"] += 1
                    self.logger.error(
                        "stale claim left for the next sweep",
                        extra={"automation": key[1], "work_order_id": key[2], "error": type(exc).__name__},
                    )
                    continue
                counts["marked"] += 1
                self.logger.warning(
                    "automated email may have been sent unrecorded",
                    extra={"automation": claim.automation, "work_order_id": claim.work_order_id},
                )
                counts["notified"] += self._notify(pool, claim)
        return counts

    def _finish_recorded(self, key: LedgerKey, claimed_at: int) -> bool:
        """Finish the claim with the outcome its worker wrote to the sent log before it stopped, if it
        did (the entry stands as it is); False when the sent log has none. Raises MailerError when
        the sent log cannot be read or the ledger not written: the claim waits for the next run."""
        tenant_id, automation, work_order_id, _ = key
        entry = recorded_outcome(
            self._entries_since(tenant_id, work_order_id, claimed_at),
            automation,
            claimed_at,
            self.config.stale_claim_seconds,
        )
        if entry is None:
            return False
        if self.ledger.finish_many([Finish(key, entry.status, claimed_at)]):
            raise ServiceUnavailable("The send ledger could not be written; try again.")
        self.logger.info(
            "stale claim finished with its sent-log outcome",
            extra={"automation": automation, "work_order_id": work_order_id, "status": entry.status},
        )
        return True

    def _entries_since(self, tenant_id: str, work_order_id: str, since: int) -> list[SentLogEntry]:
        """The work order's sent-log entries made since `since` (epoch seconds): pages of the
        by_work_order index, newest first, until one reaches back before it."""
        entries: list[SentLogEntry] = []
        cursor: str | None = None
        while True:
            page, cursor = self.sent_log.list(tenant_id, work_order_id=work_order_id, cursor=cursor)
            entries += page
            if cursor is None or (page and epoch_seconds(page[-1].created_at) < since):
                return entries

    def _read(self, key: LedgerKey, claimed_at: int) -> Claim:
        tenant_id, _, work_order_id, _ = key
        work_order = self.work_orders.get(tenant_id, work_order_id)
        parent = (
            self.work_orders.get(tenant_id, work_order.parent_id)
            if work_order is not None and work_order.parent_id
            else None
        )
        contact = (parent or work_order).customer if work_order is not None else None
        return Claim(key, claimed_at, work_order, contact, self._profile(tenant_id))

    def _profile(self, tenant_id: str) -> SendingProfile | None:
        if tenant_id not in self._profiles:
            try:
                profile: SendingProfile | None = self.settings.saved_profile(
                    system_caller(tenant_id), "company"
                )
            except NotFound:
                profile = None
            self._profiles[tenant_id] = profile
        return self._profiles[tenant_id]

    def _notify(self, pool: TransportPool, claim: Claim) -> int:
        """1 when the company's notification address was told, else 0 (no address, or not sent)."""
        if claim.company is None or not claim.company.settings.notify_email:
            return 0
        customer = ", ".join(filter(None, [claim.contact.name, claim.recipient])) if claim.contact else None
        notice = unknown_notice(claim.company.settings, label_of(claim.automation), claim.number, customer)
        try:
            pool.send(claim.tenant_id, claim.company, notice)
        except MailerError as exc:
            why = {"error": type(exc).__name__}
            if isinstance(exc, DeliveryFailed):
                why["category"] = exc.failure.category
            self.logger.error(
                "unknown-outcome notice not sent", extra={"work_order_id": claim.work_order_id} | why
            )
            return 0
        return 1
