"""Test data the suites share: work orders, SMTP settings bodies, PDF files, the day of the reminder run."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from mailer.documents.sample_pdf import pdf_file as pdf_file  # re-exported for the tests
from mailer.work_orders.models import WorkOrder

RUN_DATE = date(2026, 11, 23)  # the day the noon run is given
TOMORROW = RUN_DATE + timedelta(days=1)
OWNER = "owner@acme.example"  # the company's notify_email
TIMEZONE = "America/Chicago"


def work_order(number: str, start: date, **changes: Any) -> dict[str, Any]:
    """The body of PUT /work-orders/{id}: a scheduled visit at 9:00 on `start` for a customer who
    wants email at <number>@customer.example. `customer` changes are merged into the customer."""
    customer = {
        "name": f"Customer {number}",
        "email": f"{number.lower()}@customer.example",
        "contact_method": "email",
    }
    return {
        "number": number,
        "status": "scheduled",
        "confirmation_status": "none",
        "scheduled_start": f"{start.isoformat()}T09:00:00-06:00",
        "scheduled_end": f"{start.isoformat()}T11:00:00-06:00",
        "customer": customer | changes.pop("customer", {}),
        "technician": {"name": "Luis Ortega"},
        "site_address": "1420 W Elm St, Springfield",
        "description": "Furnace tune-up",
    } | changes


def stored_work_order(number: str, start: date, **changes: Any) -> WorkOrder:
    """The same work order as the store holds it, with its id (the number)."""
    return WorkOrder.model_validate(work_order(number, start, **changes) | {"id": number})


def smtp_settings(
    account: str, password: str, /, *, port: int | None = None, **changes: Any
) -> dict[str, Any]:
    """Settings for a STARTTLS account on 127.0.0.1 that signs in as, and sends from, `account`;
    `changes` replace or add fields (a wrong `password`, another `host`, ...)."""
    body: dict[str, Any] = {"host": "127.0.0.1"}
    if port is not None:
        body["port"] = port
    body |= {
        "security": "starttls",
        "username": account,
        "password": password,
        "from_name": "Acme Plumbing",
        "from_email": account,
    }
    return body | changes


def company_settings(account: str, password: str, /, *, port: int, **changes: Any) -> dict[str, Any]:
    """`smtp_settings` as automated email needs them: a notify address and the company's time zone."""
    return smtp_settings(account, password, port=port, notify_email=OWNER, timezone=TIMEZONE) | changes


def invoice(number: str, due: date | str, **changes: Any) -> dict[str, Any]:
    """A PUT /invoices/{id} body: open, 120.00 USD due on `due`, Dana emailed at her address."""
    customer = {"id": "C-17", "name": "Dana Whitfield", "email": "dana@customer.example"}
    customer["contact_method"] = "email"
    return {
        "number": number,
        "status": "open",
        "customer": customer | changes.pop("customer", {}),
        "issue_date": "2026-10-01",
        "due_date": due if isinstance(due, str) else due.isoformat(),
        "total": "120.00",
        "amount_due": "120.00",
        "currency": "USD",
        "payment_url": f"https://pay.example/i/{number}",
        "pdf_upload_id": None,
    } | changes
