"""Automated email settings: reminder, confirmation and thank-you, with defaults before any save."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from mailer.work_orders.models import FIRST_YEAR, LAST_YEAR

AutomationType = Literal["reminder", "confirmation", "thank_you"]
AUTOMATION_TYPES: tuple[str, ...] = get_args(AutomationType)


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


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    work_order_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")] | None = None


class Preview(BaseModel):
    subject: str
    html: str
    text: str


def _in_service_years(value: dt.date) -> dt.date:
    # The run adds days_before to the date: 9999-12-31 would leave the calendar.
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"must be in the years {FIRST_YEAR} to {LAST_YEAR}")
    return value


class ReminderRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: (
        Annotated[
            dt.date,
            AfterValidator(_in_service_years),
            Field(
                description=f"The run's day, in the years {FIRST_YEAR} to {LAST_YEAR}; today when left out."
            ),
        ]
        | None
    ) = None


class ReminderRunResult(BaseModel):
    queued: int
