"""Amazon SES event records (as EventBridge delivers them from a configuration set) read into events.

The `detail` of an EventBridge event from SES is the event record SES documents for its event
destinations: `eventType`, `mail` (with `messageId`) and one object named for the type (`bounce`,
`complaint`, `delivery`, `deliveryDelay`, `reject`, `open`, `click`, `send`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mailer.tracking.models import DeliveryEvent, EventType

# eventType -> (our event type, the name of the record's own object)
KNOWN: dict[str, tuple[EventType, str]] = {
    "Send": ("send", "send"),
    "Delivery": ("delivery", "delivery"),
    "DeliveryDelay": ("delivery_delay", "deliveryDelay"),
    "Bounce": ("bounce", "bounce"),
    "Complaint": ("complaint", "complaint"),
    "Reject": ("reject", "reject"),
    "Open": ("open", "open"),
    "Click": ("click", "click"),
}
MAX_RECIPIENTS = 50  # of one record, in the event's detail and as suppressions


@dataclass(frozen=True)
class SesNotice:
    """One SES record: which mail (SES message id), the event, its key, the addresses to suppress."""

    message_id: str
    key: str
    event: DeliveryEvent
    suppress: list[tuple[str, str]] = field(default_factory=list)  # (address, bounce | complaint)


def read_ses_event(event: dict[str, Any]) -> SesNotice | None:
    """The notice of an EventBridge event from SES, or None for anything else (other SES events,
    Rendering Failure, Subscription, a record without a message id)."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return None
    kind = detail.get("eventType") or detail.get("notificationType")
    mail = detail.get("mail")
    if kind not in KNOWN or not isinstance(mail, dict) or not isinstance(mail.get("messageId"), str):
        return None
    event_type, part_name = KNOWN[kind]
    found = detail.get(part_name)
    part: dict[str, Any] = found if isinstance(found, dict) else {}
    at = _text(part.get("timestamp")) or _text(mail.get("timestamp")) or _text(event.get("time")) or ""
    info, suppress = _detail(event_type, part)
    # SES gives bounces and complaints a feedbackId; for the rest, the type, time and recipients
    # name the event: a record EventBridge delivers twice has the same key.
    who = ",".join(sorted(r for r in info.get("recipients", []) if isinstance(r, str)))
    key = f"ses:{event_type}:{_text(part.get('feedbackId')) or at}:{who}"
    return SesNotice(
        message_id=mail["messageId"],
        key=key[:300],
        event=DeliveryEvent(type=event_type, at=at, detail={"source": "ses", **info}),
        suppress=suppress,
    )


def _detail(event_type: str, part: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    suppress: list[tuple[str, str]] = []
    if event_type == "bounce":
        bounced = _recipients(part.get("bouncedRecipients"))
        permanent = part.get("bounceType") == "Permanent"
        if permanent:
            suppress = [(r["emailAddress"], "bounce") for r in bounced]
        first = bounced[0] if bounced else {}
        return {
            "recipients": [r["emailAddress"] for r in bounced],
            "bounce_type": _text(part.get("bounceType")),
            "bounce_subtype": _text(part.get("bounceSubType")),
            "permanent": permanent,
            "status": _text(first.get("status")),
            "diagnostic": _text(first.get("diagnosticCode")),
        }, suppress
    if event_type == "complaint":
        complained = _recipients(part.get("complainedRecipients"))
        suppress = [(r["emailAddress"], "complaint") for r in complained]
        return {
            "recipients": [r["emailAddress"] for r in complained],
            "feedback_type": _text(part.get("complaintFeedbackType")),
        }, suppress
    if event_type == "delivery":
        recipients = [r for r in part.get("recipients") or [] if isinstance(r, str)][:MAX_RECIPIENTS]
        return {"recipients": recipients, "smtp_response": _text(part.get("smtpResponse"))}, suppress
    if event_type == "delivery_delay":
        delayed = _recipients(part.get("delayedRecipients"))
        first = delayed[0] if delayed else {}
        return {
            "recipients": [r["emailAddress"] for r in delayed],
            "delay_type": _text(part.get("delayType")),
            "status": _text(first.get("status")),
            "diagnostic": _text(first.get("diagnosticCode")),
            "expires_at": _text(part.get("expirationTime")),
        }, suppress
    if event_type == "reject":
        return {"reason": _text(part.get("reason"))}, suppress
    if event_type == "click":
        return {"link": _text(part.get("link"))}, suppress
    return {}, suppress  # send, open: the IP address and user agent of an open are not kept


def _recipients(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    found = [r for r in value if isinstance(r, dict) and isinstance(r.get("emailAddress"), str)]
    return found[:MAX_RECIPIENTS]


def _text(value: Any, limit: int = 500) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None
