"""The demo tenant, seeded through the real handlers: company settings, automations, work orders,
invoices with their PDFs."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from datetime import date
from typing import Any

from local import demo_billing, demo_data
from local.events import ADMIN, http_event, json_request
from local.handlers import Functions
from local.http_server import match_route
from local.stack_config import HOST, StackConfig
from local.template import Template

TENANT = "demo"
FROM_EMAIL = "billing@demo.test"


def demo_settings(config: StackConfig) -> dict[str, Any]:
    """Company settings of the demo tenant: the local SMTP server, as an admin would save them."""
    return {
        "transport": "smtp",
        "host": HOST,
        "port": config.smtp_port,
        "security": "starttls",
        "username": config.smtp_username,
        "password": config.smtp_password,
        "from_name": "Demo Plumbing & Heating",
        "from_email": FROM_EMAIL,
        "timezone": demo_data.TIMEZONE,
        "notify_email": "owner@demo.test",
        "track_opens": True,
        # Bounce reports come back into the same account's mailbox on the local IMAP server.
        "read_bounces": True,
        "imap_host": HOST,
        "imap_port": config.imap_port,
    }


def seed_call(functions: Functions, template: Template, method: str, path: str, body: Any = None) -> Any:
    """One request to the real handler as the demo admin, without HTTP and in this process (the API's
    worker processes may still be starting); the decoded JSON answer."""
    match = match_route(template.routes(), method, path)
    if match.route is None:
        raise RuntimeError(f"template.yaml has no route for {method} {path}")
    request = json_request(method, path, match.route.path, body, **match.path_parameters)
    result = functions.invoke_here(match.route.function, http_event(request, ADMIN))
    if result.get("statusCode") not in (200, 201):
        raise RuntimeError(f"seeding the demo tenant failed: {method} {path} answered {result}")
    return json.loads(result.get("body") or "null")


@dataclass(frozen=True)
class DemoSeed:
    today: date  # the day the demo work orders and invoices were placed around
    uploads: dict[str, str]  # file name -> upload id (the invoices' PDFs, the packing slip)


def seed_demo_tenant(functions: Functions, template: Template, config: StackConfig) -> DemoSeed:
    """Through the real handlers, so the password goes to Secrets Manager, the active reminder to the
    index the noon run reads, and the work orders to the reminder index, as in production.

    Returns the day the demo work orders and invoices were placed around, and the uploads made.
    """

    def call(method: str, path: str, body: Any = None) -> Any:
        return seed_call(functions, template, method, path, body)

    call("PUT", "/settings/company", demo_settings(config))
    for automation_type in demo_data.AUTOMATION_TYPES:
        path = f"/automations/{automation_type}"
        call("PUT", path, demo_data.activated(call("GET", path)))
    today = demo_data.today_in(demo_settings(config)["timezone"])
    for work_order_id, body in demo_data.demo_work_orders(today).items():
        call("PUT", f"/work-orders/{work_order_id}", body)
    uploads: dict[str, str] = {}
    for invoice_id, body in demo_billing.demo_invoices(today).items():
        if invoice_id in demo_billing.WITH_PDF:
            name = f"{invoice_id}.pdf"
            body["pdf_upload_id"] = uploads[name] = upload(call, name, demo_billing.invoice_pdf(body))
        call("PUT", f"/invoices/{invoice_id}", body)
    slip = demo_billing.PACKING_SLIP
    uploads[f"{slip}.pdf"] = upload(call, f"{slip}.pdf", demo_billing.packing_slip(slip))
    for event in demo_billing.ACTIVE_EVENTS:
        path = f"/document-automations/{event}"
        call("PUT", path, call("GET", path) | {"active": True})
    return DemoSeed(today, uploads)


def upload(call: Any, filename: str, content: bytes) -> str:
    """POST /documents/uploads, then the PUT of the bytes to the presigned address (moto's S3 on
    loopback), as the frontend uploads a PDF."""
    ticket = call(
        "POST",
        "/documents/uploads",
        {"filename": filename, "content_type": "application/pdf", "size": len(content)},
    )
    url = ticket["url"]
    if not url.startswith("http://127.") and not url.startswith("http://localhost"):
        raise RuntimeError(f"seeding the demo tenant: the upload address is not the local S3: {url}")
    request = urllib.request.Request(url, data=content, headers=ticket["headers"], method="PUT")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - the local S3, checked above
        if response.status != 200:
            raise RuntimeError(
                f"seeding the demo tenant failed: the upload of {filename} answered {response.status}"
            )
    return str(ticket["upload_id"])
