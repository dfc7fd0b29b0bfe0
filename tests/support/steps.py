"""Requests the tests make again and again through the `Api` client, each checking its answer."""

from __future__ import annotations

from datetime import date
from typing import Any

import requests

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


def upload_pdf(api: Api, content: bytes, filename: str = "invoice.pdf") -> str:
    """POST /documents/uploads, then the PUT to the presigned address, as the frontend uploads."""
    request = {"filename": filename, "content_type": "application/pdf", "size": len(content)}
    status, ticket, _ = api.call("POST", "/documents/uploads", request)
    assert status == 201, ticket
    response = requests.put(ticket["url"], data=content, headers=ticket["headers"], timeout=10)
    assert response.status_code == 200
    return str(ticket["upload_id"])


def sync_invoice(api: Api, invoice_id: str, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    status, stored, _ = api.call("PUT", f"/invoices/{invoice_id}", body, **kwargs)
    assert status == 200, stored
    return stored


def activate_rule(api: Api, rule_id: str, **changes: Any) -> dict[str, Any]:
    """Switch an invoice reminder rule on with its current wording and days, changed by `changes`."""
    _, current, _ = api.call("GET", f"/invoice-reminders/{rule_id}")
    fields = ("name", "offset_days", "repeat_every_days", "max_sends", "min_amount_due", "subject")
    fields += ("body_html", "body_text", "attach_pdf")
    body = {k: current[k] for k in fields if current.get(k) is not None}
    status, saved, _ = api.call("PUT", f"/invoice-reminders/{rule_id}", body | {"active": True} | changes)
    assert status == 200, saved
    return saved


def run_invoice_reminders(api: Api, run_date: date, **kwargs: Any) -> int:
    """POST /invoice-reminders/run for `run_date`; how many reminders it queued."""
    status, body, _ = api.call("POST", "/invoice-reminders/run", {"date": run_date.isoformat()}, **kwargs)
    assert status == 200, body
    return int(body["queued"])


def activate_document_event(api: Api, event: str, **changes: Any) -> dict[str, Any]:
    """Switch a document event's confirmation on with its current wording, changed by `changes`."""
    _, current, _ = api.call("GET", f"/document-automations/{event}")
    fields = ("subject", "body_html", "body_text", "attach_document", "sender")
    body = {k: current[k] for k in fields if current.get(k) is not None}
    status, saved, _ = api.call("PUT", f"/document-automations/{event}", body | {"active": True} | changes)
    assert status == 200, saved
    return saved


def raise_event(
    api: Api,
    event: str,
    document: dict[str, Any],
    to: list[str],
    attachments: list[str] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """POST /documents/events as the business application raises one; its 200 answer."""
    body = {"event": event, "document": document, "to": to}
    body["attachments"] = [{"upload_id": upload_id} for upload_id in attachments or []]
    status, answer, _ = api.call("POST", "/documents/events", body, **kwargs)
    assert status == 200, answer
    return answer


def save_statement_schedule(api: Api, **changes: Any) -> dict[str, Any]:
    """PUT /statements/schedule: the current schedule switched on, changed by `changes`."""
    _, current, _ = api.call("GET", "/statements/schedule")
    fields = ("frequency", "day", "min_balance", "subject", "body_html", "attach_invoices")
    body = {k: current[k] for k in fields} | {"active": True} | changes
    status, saved, _ = api.call("PUT", "/statements/schedule", body)
    assert status == 200, saved
    return saved


def run_statements(api: Api, run_date: date, **kwargs: Any) -> int:
    """POST /statements/run for `run_date`; how many statements it queued."""
    status, body, _ = api.call("POST", "/statements/run", {"date": run_date.isoformat()}, **kwargs)
    assert status == 200, body
    return int(body["queued"])
