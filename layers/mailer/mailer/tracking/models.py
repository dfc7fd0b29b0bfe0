"""What happened to a sent email after the server took it: its events and the status they add up to.

Plain values only: the sent-log store reads an entry's events, `apply` says what they become, the
store writes that back under a condition. A repeated event (the same key) changes nothing.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

DeliveryStatus = Literal["sent", "delivered", "delayed", "bounced", "complained", "opened"]
EventType = Literal[
    "send", "delivery", "delivery_delay", "bounce", "complaint", "reject", "open", "click", "opened"
]

# The status an event leads to, and which status wins when several events came: a later, weaker
# event (an open after a bounce) never hides a bounce or a complaint.
STATUS_OF: dict[str, DeliveryStatus] = {
    "send": "sent",
    "delivery": "delivered",
    "delivery_delay": "delayed",
    "bounce": "bounced",
    "reject": "bounced",  # SES refused to send it (a virus): the mail never left
    "complaint": "complained",
    "open": "opened",
    "click": "opened",  # a click implies the mail was opened
    "opened": "opened",
}
RANK: dict[DeliveryStatus, int] = {
    "sent": 0,
    "delayed": 1,
    "delivered": 2,
    "opened": 3,
    "bounced": 4,
    "complained": 5,
}
MAX_EVENTS = 50  # kept per entry; an entry's opens are one event with a count
MAX_KEYS = 100  # event keys remembered per entry to spot repeats


class DeliveryEvent(BaseModel):
    type: EventType
    at: str
    detail: dict[str, Any] = Field(default_factory=dict)


class Timeline(BaseModel):
    """The tracking part of one sent-log entry."""

    status: DeliveryStatus | None
    events: list[DeliveryEvent] = Field(default_factory=list)
    keys: list[str] = Field(default_factory=list)  # of the events already recorded


def stronger(current: DeliveryStatus | None, new: DeliveryStatus) -> DeliveryStatus:
    if current is None or RANK[new] > RANK[current]:
        return new
    return current


def apply(timeline: Timeline, key: str | None, event: DeliveryEvent) -> Timeline | None:
    """The timeline with the event added, or None when this event (its key) was recorded already.
    Opens (the pixel's, or SES open events) are one `opened` event per entry: the first open's time
    and a count of every open since. An event without a key (a pixel fetch) is never a repeat."""
    if key is not None and key in timeline.keys:
        return None
    keys = timeline.keys if key is None else [*timeline.keys, key][-MAX_KEYS:]
    events = list(timeline.events)
    if event.type in ("open", "opened"):
        for index, earlier in enumerate(events):
            if earlier.type == "opened":
                count = int(earlier.detail.get("count", 1)) + 1
                detail = {**earlier.detail, "count": count, "last_at": event.at}
                events[index] = DeliveryEvent(type="opened", at=earlier.at, detail=detail)
                break
        else:
            detail = {**event.detail, "count": 1, "last_at": event.at}
            events.append(DeliveryEvent(type="opened", at=event.at, detail=detail))
    else:
        events.append(event)
    return Timeline(
        status=stronger(timeline.status, STATUS_OF[event.type]), events=events[-MAX_EVENTS:], keys=keys
    )
