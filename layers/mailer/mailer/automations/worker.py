"""The outbox worker: one SQS batch of queued messages (up to ten), each automated email sent once.

One engine for every record kind: work orders, invoices, customers' statements and document events.
What differs between them (reading the records, whether one is still due, composing the email,
naming it) is a `RecordKind` (automations/kinds.py); the phases, the ledger, the budgets and the
sent log are the same for all.

A batch goes through phases, so that its AWS calls are made once for the batch, not once a message:

1. read: its records, by kind (work orders and their parents in one BatchGetItem), each tenant's
   wording once;
2. check: the kind's `why_not` (for work orders `why_not_send`, a pure function), for each message;
3. claim: the ledger claims of the whole batch together (`LedgerStore.claim_many`: a transaction of
   conditional puts, all or none, so a throttled claim leaves nothing claimed and nothing lost);
4. admit: `_admit`, where sending budgets decide what may go now;
5. send: over the TransportPool (one connection per sender), while the invocation has time for one;
6. log: the sent-log entries (BatchWriteItem). An entry the sent log does not take waits on the
   outbox queue as a message of its own; one the queue refuses too rides in its ledger item, and the
   record comes back: its next delivery finds the claim taken, writes the entry (and sends nothing).
   A reminder's mark waits for that delivery too, so that `why_not_send` lets it through to the claim;
7. mark: the reminded work orders' confirmation status, on the versions read (one transaction);
8. finish: the claims' outcomes in the ledger (BatchWriteItem), each item written whole.

What became of each record is a `Settled`: its `Handled` outcome, and the error when SQS must deliver
it again. A transient failure gives the claim back and asks for that; the other records go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from mailer.automations.compose import label_of, system_caller
from mailer.automations.kinds import Job, RecordKind
from mailer.automations.notice import failure_notice
from mailer.automations.outbox import OutboxMessage, QueuedMessage, SentLogMessage, parse_queued
from mailer.automations.service import AutomationService
from mailer.automations.work_order_kind import WORK_ORDER_AUTOMATIONS, WorkOrderKind, why_not_send
from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.dal.ledger_table import Finish, LedgerKey, LedgerStore, Taken
from mailer.dal.outbox_queue import MAX_DELAY_SECONDS, OutboxQueue
from mailer.dal.secret_store import SecretMissing
from mailer.dal.sent_log_table import SentLogStore
from mailer.dal.work_orders_table import WorkOrderStore
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.message import OutgoingMessage
from mailer.delivery.transports.base import Delivery
from mailer.errors import MailerError, NotFound, TooManyRequests
from mailer.identity import Caller
from mailer.ids import new_id
from mailer.sent_log.models import SentLogEntry
from mailer.settings.sending import TransportPool
from mailer.settings.service import SendingProfile, SettingsService
from mailer.suppression.models import Suppression, normalized
from mailer.suppression.service import Suppressions, why
from mailer.tracking.opens import OpenPixel
from mailer.work_orders.models import WorkOrder

__all__ = ["OutboxWorker", "WorkerDeps", "why_not_send"]

MAX_RECEIVES = 5  # the queue's maxReceiveCount: the last try before the dead-letter queue
# Over budget, a message is put back on the queue until its window turns: a few seconds past it, so
# the deferred ones do not all arrive in the first second of the next minute. After this many
# deferrals (a day and more at the daily limit) it takes the ordinary redelivery path instead.
DEFER_SPREAD_SECONDS = 2
MAX_DEFERRALS = 200
MARK_ATTEMPTS = 3  # writes of a reminded work order's confirmation status, each on a fresh read
# Kept free at the end of an invocation for the batch's writes after its last send (a few batch
# writes with their retries): the connections' deadline is this long before the invocation's end.
WRITE_RESERVE_SECONDS = 5.0
DEFAULT_LEASE_SECONDS = 120.0  # the worker's Lambda timeout: how long a connection's lease may last


def send_reserve_seconds(config: MailerConfig) -> float:
    """The least time left in the invocation for a send to be started.

    One SMTP timeout, the longest the server's answer to the message may take, on top of the writes'
    reserve: a send cut off by the deadline while that answer is awaited may have been delivered, and
    its redelivery would send it twice. The steps before it (connect, sign in, envelope) are cut off
    harmlessly (nothing was delivered; the record comes back), and the connections' deadline stops
    any server that is slower still before the Lambda's own timeout."""
    return config.smtp_timeout_seconds + WRITE_RESERVE_SECONDS


class RetryLater(Exception):
    """A transient failure: the record fails and SQS delivers it again (a signal, not a report)."""


class Deferred(RetryLater):
    """Claimed but not sent on purpose (a sending budget, or too little time left): the claim is
    given back and the record delivered again later."""


class Outcome(StrEnum):
    SENT = "sent"
    SKIPPED = "skipped"
    FAILED = "failed"
    DEFERRED = "deferred"  # nothing sent now: the record is delivered again
    LOGGED = "logged"  # a queued sent-log entry was written


@dataclass(frozen=True)
class Handled:
    outcome: Outcome
    detail: str | None = None  # why it was skipped or deferred, or the failure's category

    def __str__(self) -> str:
        return f"{self.outcome}: {self.detail}" if self.detail else str(self.outcome)


@dataclass(frozen=True)
class Settled:
    """What became of one record: `handled`, and `retry`, the reason, when SQS must deliver it again
    (also after a send, when what follows it is still to be written)."""

    message: QueuedMessage | None  # None: the body was no message
    handled: Handled
    retry: Exception | None = None


def not_configured() -> Failure:
    return Failure(
        stage="connect",
        category="not_configured",
        transient=False,
        hint="The company has no email settings: an administrator must save them under /settings/company.",
    )


def password_missing(exc: SecretMissing) -> Failure:
    return Failure(stage="auth", category="password_missing", transient=False, hint=exc.detail)


def template_error(automation_type: str, exc: Exception, fix_at: str | None = None) -> Failure:
    return Failure(
        stage="render",
        category="template_error",
        transient=False,
        hint=f"The {label_of(automation_type)} wording could not be filled in "
        f"({type(exc).__name__}); fix it under {fix_at or '/automations/' + automation_type}.",
    )


@dataclass
class WorkerDeps:
    config: MailerConfig
    settings: SettingsService
    automations: AutomationService
    work_orders: WorkOrderStore
    ledger: LedgerStore
    sent_log: SentLogStore
    attachments: AttachmentStore | None
    logger: Any
    outbox: OutboxQueue | None = None  # where a sent-log entry waits when the sent log refuses it
    suppressions: Suppressions | None = None  # the companies' suppression lists, checked after the claim
    # The record kinds besides work orders, by automation (invoice_reminder, statement, ...).
    kinds: dict[str, RecordKind] = field(default_factory=dict)
    pixel: OpenPixel | None = None  # open tracking, for companies with track_opens on


@dataclass
class _Settling:
    """A record on its way through the phases: settled once `handled` or `retry` is set."""

    handled: Handled | None = field(default=None, init=False)
    retry: Exception | None = field(default=None, init=False)

    @property
    def open(self) -> bool:
        return self.handled is None and self.retry is None

    def settle(self, handled: Handled) -> None:
        self.handled = handled

    def come_back(self, reason: Exception) -> None:
        """The record is to be delivered again; nothing of it was sent, unless already settled so."""
        self.retry = self.retry or reason
        if self.handled is None:
            detail = str(reason) if isinstance(reason, RetryLater) else type(reason).__name__
            self.handled = Handled(Outcome.DEFERRED, detail)


@dataclass
class _Email(_Settling):
    """One automated email of the batch."""

    job: Job = field(kw_only=True)
    receive_count: int = field(default=1, kw_only=True)
    claimed_at: int | None = field(default=None, kw_only=True)  # set while this worker holds the claim
    entry_id: str = field(default_factory=new_id, kw_only=True)  # of its sent-log entry once sent

    @property
    def message(self) -> OutboxMessage:
        return self.job.message

    @property
    def tenant_id(self) -> str:
        return self.message.tenant_id

    @property
    def key(self) -> LedgerKey:
        return self.message.ledger_key

    @property
    def sending(self) -> bool:
        return self.open and self.claimed_at is not None

    @property
    def order(self) -> WorkOrder:
        """The work order of a work-order automation (checked by why_not_send)."""
        assert isinstance(self.job.record, WorkOrder), "checked by why_not_send"
        return self.job.record


@dataclass
class _LogWrite(_Settling):
    """A queued sent-log entry (kind `sent_log`) to write."""

    message: SentLogMessage = field(kw_only=True)


@dataclass(frozen=True)
class _Entry:
    """A sent-log entry for the write phase. `fresh`: of a send in this batch (if the sent log
    refuses it, it goes to the queue); else its record comes back when it is not written."""

    tenant_id: str
    entry: SentLogEntry
    owner: _Settling
    fresh: bool
    request: dict[str, Any] | None = None  # what a queued document email keeps for its resend


@dataclass
class _Writes:
    """What the batch writes once its sends are done."""

    entries: list[_Entry] = field(default_factory=list)
    finishes: list[tuple[_Email, str, SentLogEntry]] = field(default_factory=list)
    cleared: list[tuple[_Email, Taken, SentLogEntry]] = field(default_factory=list)  # unlogged, rewritten
    marks: list[_Email] = field(default_factory=list)


@dataclass
class OutboxWorker:
    """Lives for one invocation: settings and wording are read once, connections kept open, and no
    send is started without the time for it (`remaining_ms`, the Lambda context's clock)."""

    deps: WorkerDeps
    remaining_ms: Callable[[], int] | None = None
    pool: TransportPool = field(init=False)
    _profiles: dict[str, SendingProfile] = field(default_factory=dict)
    _wordings: dict[tuple[str, str, str], Any] = field(default_factory=dict)
    _deferred: list[tuple[_Email, int]] = field(default_factory=list)  # over budget: (email, delay)

    def __post_init__(self) -> None:
        deadline = None
        lease_seconds = DEFAULT_LEASE_SECONDS
        if self.remaining_ms is not None:
            seconds_left = self.remaining_ms() / 1000
            deadline = time.monotonic() + seconds_left - WRITE_RESERVE_SECONDS
            lease_seconds = seconds_left  # a connection's lease ends with the invocation at the latest
        budgets = self.deps.settings.budgets
        self.pool = TransportPool(self.deps.config, deadline, budgets, lease_seconds)

    def kind(self, automation: str) -> RecordKind:
        """The record kind of an automation; work orders' from the deps as they are now."""
        if automation in WORK_ORDER_AUTOMATIONS:
            deps = self.deps
            return WorkOrderKind(deps.config, deps.automations, deps.work_orders, deps.attachments)
        return self.deps.kinds[automation]

    def close(self) -> None:
        self.pool.close()

    # --- entry points ------------------------------------------------------------------------------

    def handle(self, message: OutboxMessage, receive_count: int = 1) -> Handled:
        """One message as a batch of its own: what happened; raises what asks for a redelivery."""
        [settled] = self.handle_batch([(message, receive_count)])
        if settled.retry is not None:
            raise settled.retry
        return settled.handled

    def handle_records(self, records: Sequence[tuple[str, int]]) -> list[Settled]:
        """SQS records as (body, receive count), in order. A body that is no message settles with its
        validation error, so SQS delivers it again until the dead-letter queue takes it."""
        parsed: list[QueuedMessage | ValidationError] = []
        for body, _ in records:
            try:
                parsed.append(parse_queued(body))
            except ValidationError as exc:
                parsed.append(exc)
        messages = [(m, n) for m, (_, n) in zip(parsed, records, strict=True) if not isinstance(m, Exception)]
        handled = iter(self.handle_batch(messages))
        return [
            Settled(None, Handled(Outcome.DEFERRED, "not a message"), m)
            if isinstance(m, Exception)
            else next(handled)
            for m in parsed
        ]

    def handle_batch(self, records: Sequence[tuple[QueuedMessage, int]]) -> list[Settled]:
        """The batch's (message, receive count) pairs through the phases; one Settled each, in order."""
        items: list[_Email | _LogWrite] = [
            _Email(job=Job(m), receive_count=n) if isinstance(m, OutboxMessage) else _LogWrite(message=m)
            for m, n in records
        ]
        emails = [item for item in items if isinstance(item, _Email)]
        writes = _Writes()
        for item in items:
            if isinstance(item, _LogWrite) and item.message.request is not None:
                self._write_with_request(item)
            elif isinstance(item, _LogWrite):
                writes.entries.append(_Entry(item.message.tenant_id, item.message.entry, item, fresh=False))
        self._read(emails)
        self._check(emails)
        self._claim(emails, writes)
        self._suppress(emails, writes)
        try:
            self._send_claimed(emails, writes)
        finally:  # what was sent is recorded, whatever stopped the sending
            kept, unwritten = self._log(writes)
            self._mark(writes)
            self._finish(writes, kept, unwritten)
        return [self._settled(item) for item in items]

    def _write_with_request(self, item: _LogWrite) -> None:
        """A queued entry with the request its resend needs (a document email's): a put of its own,
        as the batch write keeps no request. Not written, its record comes back."""
        message = item.message
        try:
            self.deps.sent_log.put(message.tenant_id, message.entry, request=message.request)
        except MailerError:
            item.come_back(RetryLater("sent log write failed"))

    @staticmethod
    def _settled(item: _Email | _LogWrite) -> Settled:
        if isinstance(item, _LogWrite):
            return Settled(item.message, item.handled or Handled(Outcome.LOGGED), item.retry)
        if item.open:  # never left unsettled, but were it, the record must come back, not vanish
            item.come_back(RetryLater("not handled"))
        assert item.handled is not None
        return Settled(item.message, item.handled, item.retry)

    # --- 1. read and 2. check --------------------------------------------------------------------

    def _read(self, emails: list[_Email]) -> None:
        """Each kind reads its records once for the batch; a kind whose read fails sends its
        emails back (nothing is claimed yet), the others go on."""
        by_kind: dict[str, tuple[RecordKind, list[_Email]]] = {}
        for email in emails:
            try:
                kind = self.kind(email.message.automation)
            except KeyError:
                email.come_back(RetryLater(f"no record kind for {email.message.automation}"))
                continue
            by_kind.setdefault(kind.noun, (kind, []))[1].append(email)
        for kind, group in by_kind.values():
            try:
                kind.read([email.job for email in group])
            except MailerError as exc:
                for email in group:
                    email.come_back(exc)
                continue
            for email in group:
                try:
                    email.job.wording = self._wording(kind, email.message)
                except MailerError as exc:
                    email.come_back(exc)

    def _check(self, emails: list[_Email]) -> None:
        seen: set[LedgerKey] = set()
        for email in emails:
            if not email.open:
                continue
            reason = self.kind(email.message.automation).why_not(email.job)
            if reason:
                email.settle(Handled(Outcome.SKIPPED, reason))
            elif email.key in seen:  # the same email twice in one batch: one claim, one send
                email.settle(Handled(Outcome.SKIPPED, "already sent"))
            else:
                seen.add(email.key)

    # --- 3. claim --------------------------------------------------------------------------------

    def _claim(self, emails: list[_Email], writes: _Writes) -> None:
        wanted = [e for e in emails if e.open]
        if not wanted:
            return
        try:
            claims = self.deps.ledger.claim_many([e.key for e in wanted])
        except MailerError as exc:
            for email in wanted:
                email.come_back(exc)  # the transaction claimed nothing
            return
        for email in wanted:
            taken = claims.taken.get(email.key)
            if taken is None:
                email.claimed_at = claims.claimed_at
                continue
            email.settle(Handled(Outcome.SKIPPED, "already sent"))
            self._finish_earlier_delivery(email, taken, writes)

    def _finish_earlier_delivery(self, email: _Email, taken: Taken, writes: _Writes) -> None:
        """What an earlier delivery of this email sent but could not record: its sent-log entry kept in
        the ledger, and a reminder's mark on the work order (still due, so the mark did not happen)."""
        if taken.unlogged is not None:
            entry = SentLogEntry.model_validate(taken.unlogged)
            writes.entries.append(_Entry(email.tenant_id, entry, email, fresh=False))
            writes.cleared.append((email, taken, entry))
        if taken.state == "sent" and email.message.automation == "reminder":
            writes.marks.append(email)

    # --- 3b. suppress ------------------------------------------------------------------------------

    def _suppress(self, emails: list[_Email], writes: _Writes) -> None:
        """Claimed emails to an address on the company's suppression list are not sent: each is
        logged `suppressed` and its claim finished so (the occurrence is used up, never retried).
        One BatchGetItem for the batch; when it fails, the claims go back and the records return."""
        claimed = [e for e in emails if e.sending]
        if not claimed or self.deps.suppressions is None:
            return
        to = {id(e): self.kind(e.message.automation).to_addresses(e.job) for e in claimed}
        try:
            found = self.deps.suppressions.store.find((e.tenant_id, a) for e in claimed for a in to[id(e)])
        except MailerError as exc:
            for email in claimed:
                self._put_back(email, exc)
            return
        for email in claimed:
            hits = [a for a in to[id(email)] if (email.tenant_id, normalized(a)) in found]
            if hits:
                self._suppressed(
                    email, to[id(email)], [found[(email.tenant_id, normalized(a))] for a in hits], writes
                )

    def _suppressed(self, email: _Email, to: list[str], entries: list[Suppression], writes: _Writes) -> None:
        kind = self.kind(email.message.automation)
        said = "; ".join(f"{entry.email} {why(entry)}" for entry in entries)
        failure = Failure(
            stage="recipients",
            category="suppressed",
            transient=False,
            hint=f"Not sent: {said}. An administrator can take an address off the list with "
            "DELETE /suppressions/{email}.",
        )
        entry = SentLogEntry.attempt(
            **(
                {
                    "kind": "automation",
                    "delivery": None,
                    "failure": failure,
                    "from_": "",
                    "to": to,
                    "subject": f"{label_of(email.message.automation)} for {kind.number(email.job)}",
                }
                | self._entry_fields(email)
            )
        ).model_copy(update={"status": "suppressed"})
        writes.entries.append(_Entry(email.tenant_id, entry, email, fresh=True, request=self._request(email)))
        writes.finishes.append((email, "suppressed", entry))
        email.settle(Handled(Outcome.SKIPPED, "suppressed"))

    # --- 4. admit and 5. send --------------------------------------------------------------------

    def _send_claimed(self, emails: list[_Email], writes: _Writes) -> None:
        claimed = [e for e in emails if e.sending]
        out_of_time = 0
        for tenant_id, sender in dict.fromkeys((e.tenant_id, self._sender(e)) for e in claimed):
            group = [e for e in claimed if (e.tenant_id, self._sender(e)) == (tenant_id, sender)]
            profile = self._profile_of(group, writes)
            if profile is None:
                continue
            admitted, retry_after = self._admit(tenant_id, profile, [e.message for e in group])
            admitted_keys = {m.ledger_key for m in admitted}
            for email in group:
                if email.key not in admitted_keys:
                    self._defer(email, retry_after)
                elif not self._time_for_a_send():
                    self._put_back(email, Deferred("too little time left in this invocation"))
                    out_of_time += 1
                else:
                    self._send(email, profile, writes)
        self._requeue_deferred()
        if out_of_time:
            self.deps.logger.warning(
                "too little time left to send: the rest of the batch is left for redelivery",
                extra={"count": out_of_time, "seconds_left": self._seconds_left()},
            )

    def _admit(
        self, tenant_id: str, profile: SendingProfile, messages: list[OutboxMessage]
    ) -> tuple[list[OutboxMessage], int]:
        """Sending budgets: which of one tenant's claimed messages may be sent now, in order, and in how
        many seconds to try the rest (`_defer`). One budget call for the group when all fit. Each
        message counts its customer, and the company's archive copy when it has one."""
        per_message = 1 + (1 if profile.settings.bcc else 0)
        budgets = self.deps.settings.budgets
        admission = budgets.admit(tenant_id, profile.settings, [per_message] * len(messages))
        return messages[: admission.count], admission.retry_after

    def _defer(self, email: _Email, retry_after: int) -> None:
        """Over budget: the claim is given back, then a copy of the message waits on the outbox for
        the window to turn and the record itself is done with (deleted), so its receive count is not
        used up. The copies go out together in `_requeue_deferred`; if the queue refuses one, its
        record comes back instead. A copy that arrives twice is stopped by the claim."""
        self._put_back(email, Deferred("over the sending budget"))  # the claim is released first
        if self.deps.outbox is None or email.message.deferrals >= MAX_DEFERRALS:
            return  # the ordinary redelivery
        email.retry = None
        delay = min(max(retry_after, 1) + DEFER_SPREAD_SECONDS, MAX_DELAY_SECONDS)
        email.handled = Handled(Outcome.DEFERRED, f"over the sending budget: again in {delay} s")
        self._deferred.append((email, delay))

    def _requeue_deferred(self) -> None:
        waiting, self._deferred = self._deferred, []
        if not waiting or self.deps.outbox is None:
            return
        for delay in sorted({d for _, d in waiting}):
            group = [e for e, d in waiting if d == delay]
            copies = [e.message.model_copy(update={"deferrals": e.message.deferrals + 1}) for e in group]
            refused = {m.ledger_key for m in self.deps.outbox.send(copies, delay_seconds=delay)}
            for email in group:
                if email.key in refused:
                    email.retry = Deferred("over the sending budget; the queue did not take its copy")

    def _profile_of(self, group: list[_Email], writes: _Writes) -> SendingProfile | None:
        """The company's sending profile for these claimed emails of one tenant, or None when they
        were settled instead (no settings: failed for good; settings unreadable: they come back)."""
        try:
            return self._profile(group[0].tenant_id, self._sender(group[0]))
        except NotFound:
            for email in group:
                self._failed(email, not_configured(), writes)
        except SecretMissing as exc:
            for email in group:
                self._failed(email, password_missing(exc), writes)
        except MailerError as exc:
            for email in group:
                self._put_back(email, exc)
        return None

    def _send(self, email: _Email, profile: SendingProfile, writes: _Writes) -> None:
        message = email.message
        kind = self.kind(message.automation)
        try:
            outgoing = self._tracked(email, kind.compose(email.job, profile))
            delivery = self.pool.send(self._sender_key(email), profile, outgoing)
        except DeliveryFailed as exc:
            self._failed(email, exc.failure, writes)
        except NotFound:
            self._failed(email, not_configured(), writes)
        except SecretMissing as exc:
            self._failed(email, password_missing(exc), writes)
        except TooManyRequests as exc:  # every connection slot of the account is held
            self._defer(email, exc.retry_after)
        except MailerError as exc:
            # Settings, password or photo could not be read: nothing reached the server, so the
            # claim goes back for the redelivery ("never twice" is about sends).
            self._put_back(email, exc)
        except Exception as exc:  # noqa: BLE001 - wording that cannot be filled in is permanent
            self._failed(email, template_error(message.automation, exc, kind.fix_at(message)), writes)
        else:
            self._sent(email, outgoing, profile, delivery, writes)

    def _tracked(self, email: _Email, outgoing: OutgoingMessage) -> OutgoingMessage:
        """With the open pixel when the company tracks opens (a company-wide choice, also for
        email sent from a user's own account)."""
        if self.deps.pixel is None:
            return outgoing
        try:
            company = self._profile(email.tenant_id).settings
        except MailerError:
            return outgoing
        if not company.track_opens:
            return outgoing
        return self.deps.pixel.add(outgoing, email.tenant_id, self._entry_id(email))

    def _entry_id(self, email: _Email) -> str:
        """The id its entry will have: the one its kind names (a raised event's email_id), else new."""
        return str(self._entry_fields(email).get("id") or email.entry_id)

    def _seconds_left(self) -> float | None:
        return None if self.remaining_ms is None else self.remaining_ms() / 1000

    def _time_for_a_send(self) -> bool:
        left = self._seconds_left()
        return left is None or left >= send_reserve_seconds(self.deps.config)

    def _put_back(self, email: _Email, reason: Exception) -> None:
        """Give the claim back and leave the record for its redelivery: nothing of it was sent."""
        if email.claimed_at is not None:
            try:
                self.deps.ledger.release(email.key)
            except MailerError:
                self.deps.logger.error(
                    "claim not given back: the email will not be tried again",
                    extra=_about(email.message),
                )
            email.claimed_at = None
        email.come_back(reason)

    def _wording(self, kind: RecordKind, message: OutboxMessage) -> Any:
        key = (message.tenant_id, message.automation, kind.wording_key(message))
        if key not in self._wordings:
            self._wordings[key] = kind.wording(message.tenant_id, message)
        return self._wordings[key]

    def _sender(self, email: _Email) -> Caller | None:
        return self.kind(email.message.automation).sender_of(email.job)

    def _sender_key(self, email: _Email) -> str:
        """The key of the email's sending profile and of its connection: the tenant for the company
        account, the tenant and user for a user's own (so one batch never sends one account's mail
        over another's connection)."""
        sender = self._sender(email)
        return email.tenant_id if sender is None else _user_key(email.tenant_id, sender)

    def _profile(self, tenant: str, sender: Caller | None = None) -> SendingProfile:
        """The company's sending profile; with a `sender`, that user's own settings when saved
        (a document event sent as its caller), else the company's."""
        if sender is not None:
            key = _user_key(tenant, sender)
            if key not in self._profiles:
                try:
                    self._profiles[key] = self.deps.settings.saved_profile(sender, "me")
                except NotFound:
                    self._profiles[key] = self._profile(tenant)
            return self._profiles[key]
        if tenant not in self._profiles:
            self._profiles[tenant] = self.deps.settings.saved_profile(system_caller(tenant), "company")
        return self._profiles[tenant]

    def _sent(
        self,
        email: _Email,
        outgoing: OutgoingMessage,
        profile: SendingProfile,
        delivery: Delivery,
        writes: _Writes,
    ) -> None:
        to = [a.addr_spec for a in outgoing.message["To"].addresses]
        base: dict[str, Any] = {
            "kind": "automation",
            "delivery": delivery,
            "failure": None,
            "from_": profile.settings.from_email,
            "to": to,
            "bcc": [a for a in outgoing.recipients if a not in to],
            "subject": str(outgoing.message["Subject"]),
        }
        entry = SentLogEntry.attempt(**(base | self._entry_fields(email) | {"id": self._entry_id(email)}))
        writes.entries.append(_Entry(email.tenant_id, entry, email, fresh=True, request=self._request(email)))
        writes.finishes.append((email, "sent", entry))
        if email.message.automation == "reminder":
            writes.marks.append(email)
        email.settle(Handled(Outcome.SENT))

    def _failed(self, email: _Email, failure: Failure, writes: _Writes) -> None:
        message = email.message
        kind = self.kind(message.automation)
        if failure.transient and email.receive_count < MAX_RECEIVES:
            self._put_back(email, RetryLater(failure.category))
            self.deps.logger.warning(
                "automated email will be retried",
                extra={"category": failure.category} | _about(message),
            )
            return
        label = f"{label_of(message.automation)} for {kind.number(email.job)}"
        recipient = kind.recipient(email.job)
        entry = SentLogEntry.attempt(
            **(
                {
                    "kind": "automation",
                    "delivery": None,
                    "failure": failure,
                    "from_": "",
                    "to": [recipient.email or ""],
                    "subject": label,
                }
                | self._entry_fields(email)
            )
        )
        writes.entries.append(_Entry(email.tenant_id, entry, email, fresh=True, request=self._request(email)))
        writes.finishes.append((email, "failed", entry))
        self._notify(email, failure)
        email.settle(Handled(Outcome.FAILED, failure.category))

    def _request(self, email: _Email) -> dict[str, Any] | None:
        """The stored request a kind keeps with its entry (a queued document email's, for resend)."""
        stored = getattr(self.kind(email.message.automation), "stored_request", None)
        return stored(email.job) if stored is not None else None

    def _entry_fields(self, email: _Email) -> dict[str, Any]:
        return self.kind(email.message.automation).entry_fields(email.job) | email.job.entry

    def _notify(self, email: _Email, failure: Failure) -> None:
        """Tell the company's notification address what failed, why, and how to fix it."""
        message = email.message
        try:  # from the company account, also for an email sent from a user's own
            profile = self._profile(message.tenant_id)
        except MailerError:
            return  # no company settings (the failure itself says so), or unreadable now
        if not profile.settings.notify_email:
            return
        extra = _about(message)
        if not self._time_for_a_send():
            self.deps.logger.error("failure notice not sent", extra=extra | {"error": "no time left"})
            return
        kind = self.kind(message.automation)
        notice = failure_notice(
            profile.settings,
            label_of(message.automation),
            f"{kind.noun} {kind.number(email.job)}",
            kind.recipient(email.job),
            failure,
        )
        try:
            self.pool.send(message.tenant_id, profile, notice)
        except MailerError as exc:
            self.deps.logger.error("failure notice not sent", extra=extra | {"error": type(exc).__name__})

    # --- 6. log and 8. finish --------------------------------------------------------------------

    def _log(self, writes: _Writes) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """Write the sent-log entries, before anything else: a stop after it leaves the proof of each
        send, beside a claim still open (which the claim sweep reports), never a claim closed without
        an entry. Returns the entries kept for their ledger items (by id, as stored) and the ids of
        every entry not written."""
        if not writes.entries:
            return {}, set()
        requests = {e.entry.id: e.request for e in writes.entries if e.request is not None}
        left = self.deps.sent_log.put_many([(e.tenant_id, e.entry) for e in writes.entries], requests)
        unwritten = {entry.id for _, entry in left}
        waiting = [e for e in writes.entries if e.entry.id in unwritten]
        kept = self._queue_entries([e for e in waiting if e.fresh])
        for e in waiting:
            if not e.fresh:
                e.owner.come_back(RetryLater("sent log write failed"))
        # A reminder whose entry rides in the ledger (now, or still) stays unmarked, still due: its
        # redelivery must get past `why_not_send` to the claim, which finds the entry, writes it
        # and marks it then.
        riding = {id(email) for email, _, entry in writes.finishes if entry.id in kept}
        riding |= {id(email) for email, _, entry in writes.cleared if entry.id in unwritten}
        writes.marks = [email for email in writes.marks if id(email) not in riding]
        return kept, unwritten

    def _finish(self, writes: _Writes, kept: dict[str, dict[str, Any]], unwritten: set[str]) -> None:
        """Close the batch's claims with their outcomes (and a kept entry); clear the kept entries
        that this batch wrote for an earlier delivery."""
        finishes = [
            Finish(email.key, state, email.claimed_at or 0, unlogged=kept.get(entry.id))
            for email, state, entry in writes.finishes
        ]
        finishes += [
            Finish(email.key, taken.state, taken.claimed_at)
            for email, taken, entry in writes.cleared
            if entry.id not in unwritten
        ]
        if not finishes:
            return
        left_keys = set(self.deps.ledger.finish_many(finishes))
        owners = {email.key: email for email, _, _ in [*writes.finishes, *writes.cleared]}
        for finish in finishes:
            if finish.key not in left_keys:
                continue
            # The claim stays `sending` (the claim sweep reports it) and the record fails, as a
            # failed ledger write always has; its redelivery finds the claim and sends nothing.
            owners[finish.key].come_back(RetryLater("send ledger not updated"))
            self.deps.logger.error(
                "send ledger not updated: the claim stays open for the claim sweep",
                extra={
                    "work_order_id": finish.key[2],
                    "state": finish.state,
                    "entry_lost": bool(finish.unlogged),
                },
            )

    def _queue_entries(self, waiting: list[_Entry]) -> dict[str, dict[str, Any]]:
        """Entries of this batch's sends that the sent log refused go to the queue as messages of
        their own; those the queue refuses too are returned (by id, as stored), for their ledger items
        to keep, and their records come back so that the next delivery writes them."""
        if not waiting:
            return {}
        if self.deps.outbox is None:
            for e in waiting:
                self.deps.logger.error(
                    "sent log write failed",
                    extra={"work_order_id": e.entry.work_order_id, "email_id": e.entry.id},
                )
            return {}
        refused = self.deps.outbox.send(
            [SentLogMessage(tenant_id=e.tenant_id, entry=e.entry, request=e.request) for e in waiting]
        )
        refused_ids = {m.entry.id for m in refused}
        kept: dict[str, dict[str, Any]] = {}
        for e in waiting:
            extra = {"work_order_id": e.entry.work_order_id, "email_id": e.entry.id}
            if e.entry.id not in refused_ids:
                self.deps.logger.warning("sent log write failed: queued to be written later", extra=extra)
                continue
            kept[e.entry.id] = e.entry.model_dump(mode="json", by_alias=True)
            e.owner.come_back(RetryLater("sent log write failed"))
            self.deps.logger.error(
                "sent log write failed: kept in the ledger for the redelivery", extra=extra
            )
        return kept

    # --- 7. mark ---------------------------------------------------------------------------------

    def _mark(self, writes: _Writes) -> None:
        """Mark the reminded work orders `confirmation_sent`: together in one transaction on the
        versions read, or, when that does not go through (one changed meanwhile), each on its own."""
        marks = list({(e.tenant_id, e.order.id): e for e in writes.marks}.values())
        if len(marks) > 1:
            reminded = [(e.tenant_id, _reminded(e.order), e.order.version) for e in marks]
            try:
                if self.deps.work_orders.put_if_versions(reminded) is not None:
                    return
            except MailerError:
                pass  # a conflict or a throttle: nothing was written; each on its own below
        for email in marks:
            try:
                self._mark_reminded(email.tenant_id, email.order)
            except MailerError as exc:
                email.come_back(exc)  # its redelivery marks it: the ledger says sent

    def _mark_reminded(self, tenant_id: str, work_order: WorkOrder) -> None:
        """Set `confirmation_status` on the work order as it is now: a write on the version read, so
        a status change made while the reminder was sent is kept, not overwritten with the old copy."""
        current: WorkOrder | None = work_order
        for _ in range(MARK_ATTEMPTS):
            if current is None:
                return
            marked = _reminded(current)
            if self.deps.work_orders.put(tenant_id, marked, expected_version=current.version) is not None:
                return
            current = self.deps.work_orders.get(tenant_id, work_order.id)
        self.deps.logger.warning(
            "reminder sent, work order not marked: it kept changing", extra={"work_order_id": work_order.id}
        )


def _user_key(tenant_id: str, sender: Caller) -> str:
    return f"{tenant_id}\x1f{sender.user_id}"


def _about(message: OutboxMessage) -> dict[str, str]:
    """A log line's fields naming the message's record (`work_order_id` for a work order's)."""
    if message.automation in WORK_ORDER_AUTOMATIONS:
        return {"work_order_id": message.record_id}
    return {"automation": message.automation, "record_id": message.record_id}


def _reminded(work_order: WorkOrder) -> WorkOrder:
    return work_order.model_copy(update={"confirmation_status": "confirmation_sent"})
