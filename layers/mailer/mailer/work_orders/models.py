"""Work orders synced by the business application, and the rules that decide who gets an email."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from mailer.settings.models import HeaderText
from mailer.templating.engine import safe_html

PHOTO_CID = "technician-photo"
PHOTO_HTML = f'<img src="cid:{PHOTO_CID}" alt="Your technician" width="160">'

WorkOrderStatus = Literal["scheduled", "en_route", "in_progress", "completed", "cancelled"]
ConfirmationStatus = Literal["none", "confirmation_sent", "confirmed"]
ContactMethod = Literal["email", "text", "none"]
WorkOrderId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
FIRST_YEAR, LAST_YEAR = 2000, 2100  # of an appointment, as the business application sends it


def _in_service_years(value: datetime) -> datetime:
    # Far-off years are typing slips, and year 1 or 9999 cannot be moved to every time zone.
    if not FIRST_YEAR <= value.year <= LAST_YEAR:
        raise ValueError(f"must be in the years {FIRST_YEAR} to {LAST_YEAR}")
    return value


AppointmentTime = Annotated[
    AwareDatetime,
    AfterValidator(_in_service_years),
    Field(description=f"With its UTC offset; in the years {FIRST_YEAR} to {LAST_YEAR}."),
]
STATUS_LABELS = {
    "scheduled": "Scheduled",
    "en_route": "En route",
    "in_progress": "In progress",
    "completed": "Completed",
    "cancelled": "Cancelled",
}


class Customer(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[HeaderText, Field(min_length=1, max_length=200)]
    # Kept as given: a bad address is a reason not to email, not a reason to refuse the sync.
    email: Annotated[HeaderText, Field(max_length=320)] | None = None
    contact_method: ContactMethod = "none"
    phone: Annotated[HeaderText, Field(max_length=40)] | None = None


class Technician(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[HeaderText, Field(max_length=200)] | None = None
    photo_upload_id: Annotated[str, Field(pattern=r"^[0-9A-Z]{26}$")] | None = None


class WorkOrderInput(BaseModel):
    """Body of PUT /work-orders/{id}."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    number: Annotated[HeaderText, Field(min_length=1, max_length=64)]
    status: WorkOrderStatus = "scheduled"
    confirmation_status: ConfirmationStatus = "none"
    scheduled_start: AppointmentTime
    scheduled_end: AppointmentTime | None = None
    parent_id: WorkOrderId | None = None
    customer: Customer
    technician: Technician | None = None
    site_address: Annotated[str, Field(max_length=500)] | None = None
    description: Annotated[str, Field(max_length=4000)] | None = None


class WorkOrder(WorkOrderInput):
    model_config = ConfigDict(extra="ignore")

    # As stored: a work order synced before the years were checked is still read.
    scheduled_start: AwareDatetime
    scheduled_end: AwareDatetime | None = None
    id: WorkOrderId
    updated_at: str | None = None
    # Written by the store: 1 for the first write, one more for every write after it. A status change
    # writes only if the version it read is still the stored one. Stored before versions: 0.
    version: Annotated[int, Field(ge=0, description="Counts the writes of the work order.")] = 0


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: WorkOrderStatus
    notify: bool = True


class EmailDecision(BaseModel):
    queued: bool
    reason: str | None = None
    automation: str | None = None


class StatusChangeResult(BaseModel):
    work_order: WorkOrder
    email: EmailDecision


def valid_address(address: str | None) -> bool:
    from email_validator import EmailNotValidError, validate_email  # when first needed

    if not address:
        return False
    try:
        validate_email(address, check_deliverability=False, test_environment=True)
    except EmailNotValidError:
        return False
    return True


def why_no_email(work_order: WorkOrder, parent: WorkOrder | None = None) -> str | None:
    """None when the customer may be emailed; otherwise the reason, in words a user understands.
    A child of a multi-day work order uses its parent's contact method and address."""
    contact = (parent or work_order).customer
    if contact.contact_method != "email":
        return f"the customer's automated contact method is {contact.contact_method}, not email"
    if not valid_address(contact.email):
        return "the customer has no valid email address"
    return None


def reminder_start_date(work_order: WorkOrder) -> str | None:
    """The date under which the daily run finds this work order, or None when it gets no reminder.

    Only top-level work orders are indexed: a multi-day work order is reminded once, on its
    parent's start date; children never on their own. The date is the appointment's own local
    date, as the business application sent it.
    """
    if work_order.parent_id is not None:
        return None
    if work_order.status != "scheduled" or work_order.confirmation_status != "none":
        return None
    if why_no_email(work_order) is not None:
        return None
    return work_order.scheduled_start.date().isoformat()


def _time(value: datetime) -> str:
    return value.strftime("%I:%M %p").lstrip("0")


def _local(value: datetime, zone: ZoneInfo) -> datetime:
    """The time in the company's zone; as sent when that is outside the calendar (year 1 or 9999)."""
    try:
        return value.astimezone(zone)
    except OverflowError:
        return value


def work_order_context(work_order: WorkOrder, zone: ZoneInfo, *, photo: bool) -> dict[str, Any]:
    start = _local(work_order.scheduled_start, zone)
    end = _local(work_order.scheduled_end, zone) if work_order.scheduled_end else None
    customer = work_order.customer
    technician = work_order.technician or Technician()
    photo_html = PHOTO_HTML if photo else ""

    return {
        "customer": {
            "name": customer.name,
            "first_name": customer.name.split()[0] if customer.name else "",
            "email": customer.email or "",
            "phone": customer.phone or "",
        },
        "site": {"address": work_order.site_address or ""},
        "work_order": {
            "number": work_order.number,
            "description": work_order.description or "",
            "status": STATUS_LABELS[work_order.status],
            "scheduled_day": f"{start:%A}",
            "scheduled_date": f"{start:%B} {start.day}, {start.year}",
            "scheduled_time": _time(start),
            "scheduled_end_time": _time(end) if end else "",
            "arrival_window": f"{_time(start)} - {_time(end)}" if end else _time(start),
        },
        "technician": {
            "name": technician.name or "",
            "first_name": technician.name.split()[0] if technician.name else "",
            "photo": safe_html(photo_html),
        },
    }
