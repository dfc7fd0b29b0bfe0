"""Automated email settings: reminder, confirmation and thank-you, with defaults before any save."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from mailer.dal import keys
from mailer.dal.settings_table import SettingsStore
from mailer.errors import Forbidden, InvalidInput
from mailer.identity import Caller
from mailer.templating.engine import check_template

AutomationType = Literal["reminder", "confirmation", "thank_you"]
AUTOMATION_TYPES: tuple[str, ...] = AutomationType.__args__  # type: ignore[attr-defined]
PREFIX = keys.AUTOMATION_PREFIX
# Sparse index of the settings table: only active reminders carry it, so the noon run finds
# the tenants to remind with one query.
ACTIVE_INDEX_PK = keys.ACTIVE_REMINDER_INDEX_PK


class AutomationInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: AutomationType | None = None
    active: bool = True
    subject: Annotated[str, Field(min_length=1, max_length=998)]
    body_html: Annotated[str, Field(min_length=1, max_length=100_000)]
    body_text: Annotated[str, Field(min_length=1, max_length=100_000)] | None = None
    days_before: Annotated[int, Field(ge=0, le=30)] | None = None
    # Read-only fields of GET, accepted and ignored so a frontend can send back what it read.
    is_default: bool | None = None
    updated_at: str | None = None
    updated_by: str | None = None


class Automation(BaseModel):
    type: AutomationType
    active: bool
    subject: str
    body_html: str
    body_text: str | None = None
    days_before: int | None = None
    is_default: bool = False
    updated_at: str | None = None
    updated_by: str | None = None


_SIGNATURE = "<p>{{ company.name }}<br>Reply to this email if anything has changed.</p>"
DEFAULTS: dict[str, dict[str, object]] = {
    "reminder": {
        "active": False,
        "days_before": 1,
        "subject": "Reminder: your appointment on [20], [21]",
        "body_html": "<p>Hello {{ customer.first_name }},</p>"
        "<p>This is a reminder of your appointment with {{ company.name }} on "
        "{{ work_order.scheduled_day }}, {{ work_order.scheduled_date }} at {{ work_order.arrival_window }}"
        "{% if site.address %} at {{ site.address }}{% endif %}.</p>" + _SIGNATURE,
    },
    "confirmation": {
        "active": False,
        "subject": "{{ technician.first_name or 'Your technician' }} is on the way",
        "body_html": "<p>Hello {{ customer.first_name }},</p>"
        "<p>{{ technician.name or 'Your technician' }} from {{ company.name }} is on the way"
        "{% if site.address %} to {{ site.address }}{% endif %}.</p>{{ technician.photo }}" + _SIGNATURE,
    },
    "thank_you": {
        "active": False,
        "subject": "Thank you from {{ company.name }}",
        "body_html": "<p>Hello {{ customer.first_name }},</p>"
        "<p>Thank you for choosing {{ company.name }}. Work order {{ work_order.number }} is complete.</p>"
        + _SIGNATURE,
    },
}


def default_automation(automation_type: str) -> Automation:
    return Automation.model_validate(
        {"type": automation_type, "is_default": True, **DEFAULTS[automation_type]}
    )


class AutomationService:
    def __init__(self, store: SettingsStore, clock: Callable[[], str]) -> None:
        self.store = store
        self.clock = clock

    def get(self, tenant_id: str, automation_type: str) -> Automation:
        item = self.store.get(tenant_id, PREFIX + automation_type)
        if item is None:
            return default_automation(automation_type)
        return Automation.model_validate(item | {"type": automation_type})

    def list(self, tenant_id: str) -> list[Automation]:
        saved = self.store.list_prefix(tenant_id, PREFIX)
        return [
            Automation.model_validate(saved[t] | {"type": t}) if t in saved else default_automation(t)
            for t in AUTOMATION_TYPES
        ]

    def save(self, caller: Caller, automation_type: str, body: AutomationInput) -> Automation:
        if not caller.is_admin:
            raise Forbidden("Only an administrator can change automated email.")
        if body.type is not None and body.type != automation_type:
            raise InvalidInput.on("type", f"does not match the path ({automation_type})")
        if automation_type != "reminder" and body.days_before is not None:
            raise InvalidInput.on("days_before", "only the reminder has days_before")
        check_template(body.subject, "subject", "automation")
        check_template(body.body_html, "body_html", "automation")
        if body.body_text is not None:
            check_template(body.body_text, "body_text", "automation")
        days = body.days_before if body.days_before is not None else DEFAULTS["reminder"]["days_before"]
        item = {
            "active": body.active,
            "subject": body.subject,
            "body_html": body.body_html,
            "body_text": body.body_text,
            "days_before": days if automation_type == "reminder" else None,
            "is_default": False,
            "updated_at": self.clock(),
            "updated_by": caller.email or caller.user_id,
        }
        stored = dict(item)
        if automation_type == "reminder" and body.active:
            stored |= {"gsi1pk": ACTIVE_INDEX_PK, "gsi1sk": caller.tenant_id}
        self.store.put(caller.tenant_id, PREFIX + automation_type, stored)
        return Automation.model_validate(item | {"type": automation_type})
