"""Requests the tests make again and again through the `Api` client, each checking its answer."""

from __future__ import annotations

from datetime import date
from typing import Any

from tests.support.api import Api
from tests.support.factories import RUN_DATE


def save_settings(api: Api, body: dict[str, Any], profile: str = "company") -> dict[str, Any]:
    status, saved, _ = api.call("PUT", f"/settings/{profile}", body)
    assert status == 200, saved
    return saved


def activate(api: Api, automation: str, **changes: Any) -> dict[str, Any]:
    """Switch an automation on with its current wording, changed by `changes`."""
    _, current, _ = api.call("GET", f"/automations/{automation}")
    body = {
        k: current[k]
        for k in ("subject", "body_html", "body_text", "days_before")
        if current.get(k) is not None
    }
    status, saved, _ = api.call("PUT", f"/automations/{automation}", body | {"active": True} | changes)
    assert status == 200, saved
    return saved


def sync(api: Api, work_order_id: str, body: dict[str, Any]) -> dict[str, Any]:
    status, stored, _ = api.call("PUT", f"/work-orders/{work_order_id}", body)
    assert status == 200, stored
    return stored


def run_reminders(api: Api, run_date: date = RUN_DATE) -> int:
    """The noon run for `run_date`; how many reminders it queued."""
    status, body, _ = api.call("POST", "/automations/reminder/run", {"date": run_date.isoformat()})
    assert status == 200, body
    return body["queued"]
