"""Work orders of the demo tenant, as its business application would sync them, relative to a day.

The reminder run for `today` (one day before, the default) reminds exactly WO-1001, WO-1002 and the
multi-day WO-1007; every other work order shows a rule that keeps a reminder from going out.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

TIMEZONE = "America/Chicago"  # the demo company's time zone (its settings say so too)
AUTOMATION_TYPES = ("reminder", "confirmation", "thank_you")
# PUT /automations/{type} takes these; GET also answers is_default, updated_at, updated_by.
AUTOMATION_INPUT_FIELDS = ("type", "active", "subject", "body_html", "body_text", "days_before")

REMINDED = ("WO-1001", "WO-1002", "WO-1007")  # due a reminder from the run of `today`
# A burst for the sending budget: eight jobs on the same day, three weeks out, all due a reminder
# from the run of the day before.
BURST = tuple(f"WO-20{n:02d}" for n in range(1, 9))
BURST_DAYS = 21


def today_in(zone: str = TIMEZONE) -> date:
    return datetime.now(ZoneInfo(zone)).date()


def _at(day: date, hour: int, minute: int = 0, zone: str = TIMEZONE) -> str:
    """Local wall time with the offset of that day (CST or CDT), as the business application sends it."""
    return datetime.combine(day, time(hour, minute), ZoneInfo(zone)).isoformat()


def _customer(
    name: str, email: str, contact_method: str = "email", phone: str | None = None
) -> dict[str, Any]:
    return {"name": name, "email": email, "contact_method": contact_method, "phone": phone}


def demo_work_orders(today: date) -> dict[str, dict[str, Any]]:
    """Work order id -> PUT /work-orders/{id} body."""
    tomorrow, day_after, next_week = (today + timedelta(days=n) for n in (1, 2, 7))

    def order(
        number: str,
        day: date,
        hours: tuple[int, int],
        customer: dict[str, Any],
        technician: str,
        address: str,
        description: str,
        **extra: Any,
    ) -> dict[str, Any]:
        return {
            "number": number,
            "status": "scheduled",
            "confirmation_status": "none",
            "scheduled_start": _at(day, hours[0]),
            "scheduled_end": _at(day, hours[1]),
            "parent_id": None,
            "customer": customer,
            "technician": {"name": technician, "photo_upload_id": None},
            "site_address": address,
            "description": description,
        } | extra

    return {
        # Due a reminder from today's run.
        "WO-1001": order(
            "WO-1001",
            tomorrow,
            (8, 10),
            _customer("Dana Whitfield", "dana.whitfield@demo.test", phone="(217) 555-0142"),
            "Luis Ortega",
            "1420 W Elm St, Springfield, IL 62704",
            "Annual furnace tune-up",
        ),
        "WO-1002": order(
            "WO-1002",
            tomorrow,
            (13, 15),
            _customer("Marcus Bell", "marcus.bell@demo.test", phone="(217) 555-0199"),
            "Priya Raman",
            "88 Lakeview Ave, Springfield, IL 62701",
            "Kitchen sink drain clog",
        ),
        # Not due: today, next week, texted, already on the way.
        "WO-1003": order(
            "WO-1003",
            today,
            (14, 16),
            _customer("Helen Ortiz", "helen.ortiz@demo.test"),
            "Luis Ortega",
            "312 N Walnut St, Springfield, IL 62702",
            "Water heater inspection",
        ),
        "WO-1004": order(
            "WO-1004",
            next_week,
            (10, 12),
            _customer("Tom Nguyen", "tom.nguyen@demo.test"),
            "Jake Miller",
            "2205 S MacArthur Blvd, Springfield, IL 62704",
            "Replace bathroom faucet",
        ),
        "WO-1005": order(
            "WO-1005",
            tomorrow,
            (11, 12),
            _customer("Grace Kim", "grace.kim@demo.test", contact_method="text", phone="(217) 555-0187"),
            "Priya Raman",
            "47 Chatham Rd, Springfield, IL 62704",
            "Thermostat replacement",
        ),
        "WO-1006": order(
            "WO-1006",
            tomorrow,
            (7, 9),
            _customer("Samuel Park", "samuel.park@demo.test"),
            "Jake Miller",
            "905 E Capitol Ave, Springfield, IL 62701",
            "Leaking water line",
            status="en_route",
        ),
        # Multi-day: one reminder, for the parent's start, to the parent's customer; the child gets none.
        "WO-1007": order(
            "WO-1007",
            tomorrow,
            (8, 16),
            _customer("Alicia Romero", "alicia.romero@demo.test", phone="(217) 555-0123"),
            "Luis Ortega",
            "500 S 2nd St, Springfield, IL 62701",
            "Boiler replacement, day 1 of 2",
        ),
        "WO-1007-2": order(
            "WO-1007-2",
            day_after,
            (8, 12),
            _customer("Ben Romero", "ben.romero@demo.test"),
            "Luis Ortega",
            "500 S 2nd St, Springfield, IL 62701",
            "Boiler replacement, day 2 of 2",
            parent_id="WO-1007",
        ),
    } | burst_work_orders(today)


def burst_work_orders(today: date) -> dict[str, dict[str, Any]]:
    """Eight customers on one day (BURST): what a budget of 5 a minute takes two minutes to send."""
    day = today + timedelta(days=BURST_DAYS)
    return {
        number: {
            "number": number,
            "status": "scheduled",
            "confirmation_status": "none",
            "scheduled_start": _at(day, 8 + n),
            "scheduled_end": _at(day, 9 + n),
            "parent_id": None,
            "customer": _customer(f"Burst Customer {n + 1}", f"burst{n + 1}@demo.test"),
            "technician": {"name": "Jake Miller", "photo_upload_id": None},
            "site_address": f"{100 + n} Oak St, Springfield, IL 62704",
            "description": "Annual furnace check",
        }
        for n, number in enumerate(BURST)
    }


def activated(automation: dict[str, Any]) -> dict[str, Any]:
    """A GET /automations/{type} answer turned into the PUT body that switches it on, wording kept."""
    body = {k: automation[k] for k in AUTOMATION_INPUT_FIELDS if automation.get(k) is not None}
    return body | {"active": True}
