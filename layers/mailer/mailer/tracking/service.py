"""Recording what happened after the send: SES events, bounce reports read from a mailbox, opens.

Each finds its sent-log entry by the provider's message id (the pixel by its signed token), adds
its event once, and puts an address that bounced for good, or complained, on the company's
suppression list. Suppression comes first and is skipped for addresses already listed, so a
retried event (its entry already changed) still completes and a repeated one changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from mailer.dal.sent_log_table import SentLogStore
from mailer.sent_log.models import SentLogEntry
from mailer.suppression.models import normalized
from mailer.suppression.service import Suppressions
from mailer.tracking.models import DeliveryEvent, EventType, apply
from mailer.tracking.opens import OpenTokens
from mailer.tracking.ses_events import read_ses_event


class BounceReport(Protocol):
    """One recipient's part of a delivery status notification (mailer.tracking.dsn)."""

    @property
    def message_id(self) -> str: ...
    @property
    def recipient(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def diagnostic(self) -> str | None: ...
    @property
    def reporting_mta(self) -> str | None: ...
    @property
    def permanent(self) -> bool: ...


Outcome = Literal["recorded", "repeated", "unknown", "ignored"]

DSN_ACTIONS: dict[str, EventType] = {
    "failed": "bounce",
    "delayed": "delivery_delay",
    "delivered": "delivery",
    "relayed": "delivery",
}


@dataclass
class Tracking:
    sent_log: SentLogStore
    suppressions: Suppressions
    clock: Callable[[], str]
    logger: Any
    open_tokens: OpenTokens | None = None

    def record_ses(self, event: dict[str, Any]) -> Outcome:
        """An EventBridge event from SES: its entry gains the event; bounces and complaints
        suppress. Events of mail this stack did not send are `unknown` and change nothing."""
        notice = read_ses_event(event)
        if notice is None:
            return "ignored"
        found = self.sent_log.find_message(notice.message_id)
        if not found:
            self.logger.info("SES event for an unknown message", extra={"event_type": notice.event.type})
            return "unknown"
        outcome: Outcome = "repeated"
        for tenant_id, entry_id in found:
            if self._record(tenant_id, entry_id, notice.key, notice.event, notice.suppress) == "recorded":
                outcome = "recorded"
        return outcome

    def record_bounce(self, tenant_id: str, report: BounceReport) -> Outcome:
        """A delivery status notification found in the company's own mailbox. Only entries of that
        company count: a report naming another company's message changes nothing."""
        event_type = DSN_ACTIONS.get(report.action)
        if event_type is None:
            return "ignored"
        entries = [e for t, e in self.sent_log.find_message(report.message_id) if t == tenant_id]
        if not entries:
            return "unknown"
        event = DeliveryEvent(
            type=event_type,
            at=self.clock(),
            detail={
                "source": "bounce_report",
                "recipients": [report.recipient],
                "permanent": report.permanent,
                "status": report.status,
                "diagnostic": report.diagnostic,
                "reporting_mta": report.reporting_mta,
            },
        )
        key = f"dsn:{report.recipient.casefold()}:{report.action}:{report.status}"
        suppress = [(report.recipient, "bounce")] if report.permanent else []
        outcome: Outcome = "repeated"
        for entry_id in entries:
            if self._record(tenant_id, entry_id, key, event, suppress) == "recorded":
                outcome = "recorded"
        return outcome

    def record_open(self, token: str, detail: dict[str, Any] | None = None) -> Outcome:
        """A pixel fetch: a valid token counts an open of its entry; anything else records nothing."""
        if self.open_tokens is None:
            return "ignored"
        named = self.open_tokens.read(token)
        if named is None:
            return "ignored"
        tenant_id, entry_id = named
        event = DeliveryEvent(type="opened", at=self.clock(), detail=detail or {})
        changed = self.sent_log.change_timeline(tenant_id, entry_id, lambda t: apply(t, None, event))
        return "unknown" if changed is None else "recorded"

    def _record(
        self,
        tenant_id: str,
        entry_id: str,
        key: str,
        event: DeliveryEvent,
        suppress: Iterable[tuple[str, str]],
    ) -> Outcome:
        entry = self.sent_log.get(tenant_id, entry_id)
        if entry is None:
            return "unknown"
        self._suppress(tenant_id, entry, suppress)
        recorded = False

        def change(timeline: Any) -> Any:
            nonlocal recorded
            changed = apply(timeline, key, event)
            recorded = changed is not None
            return changed

        self.sent_log.change_timeline(tenant_id, entry_id, change)
        return "recorded" if recorded else "repeated"

    def _suppress(self, tenant_id: str, entry: SentLogEntry, suppress: Iterable[tuple[str, str]]) -> None:
        """Only the entry's own recipients: a report cannot put other addresses on the list."""
        recipients = {normalized(a) for a in [*entry.to, *entry.cc, *entry.bcc]}
        wanted = {normalized(a): reason for a, reason in suppress if normalized(a) in recipients}
        if not wanted:
            return
        listed = self.suppressions.suppressed(tenant_id, list(wanted))
        for address, reason in wanted.items():
            if address not in listed:
                self.suppressions.add(tenant_id, address, reason, email_id=entry.id)  # type: ignore[arg-type]
                self.logger.info("address suppressed", extra={"reason": reason, "email_id": entry.id})
