"""The banner's delivery-tracking part: a bounce read back from the local IMAP server, the
suppression it leads to, and an open through the pixel."""

from __future__ import annotations

import shlex
from typing import Any

from local import demo_billing
from local.banner_text import curl, examples
from local.bounce_back import BOUNCING_ADDRESS
from local.stack import LocalStack


def tracking_help(stack: LocalStack) -> list[str]:
    url = stack.api_url
    invoice = demo_billing.demo_invoices(stack.demo_today)["INV-3001"] if stack.demo_today else {}
    email = {
        "document": {
            "type": "invoice",
            "number": "INV-3001",
            "customer_name": "Dana Whitfield",
            "amount": str(invoice.get("amount_due", "120.00")),
        },
        "to": [BOUNCING_ADDRESS],
        "sender": "company",
    }
    dana = email | {"to": [demo_billing.CUSTOMERS["C-101"]["email"]]}
    fetch_pixel = (
        "curl -s -o /dev/null -w '%{http_code} %{content_type}\\n' "
        f'"$(python3 -m local.pixel_of {shlex.quote(str(stack.mail_dir))})"'
    )
    imap = stack.imap
    where = f"127.0.0.1:{imap.imaps_port}" if imap is not None else "(not started)"
    return [
        f"  Bounces and opens: the demo account's mailbox is on a local IMAP server (Dovecot, {where});",
        f"  mail to {BOUNCING_ADDRESS} is accepted, then its bounce report lands there, and the",
        "  bounce reader (every few seconds here, every 15 minutes deployed) marks the entry.",
        "  The demo company tracks opens: its HTML mail carries a pixel.",
        "",
        *examples(
            [
                (
                    f"Send INV-3001 to {BOUNCING_ADDRESS} (answers 200, status sent)",
                    curl("POST", f"{url}/documents/email", email),
                ),
                (
                    "A few seconds later: the entry is bounced, with the report's 5.1.1 and diagnostic",
                    curl("GET", f"{url}/emails?delivery_status=bounced"),
                ),
                (
                    f"{BOUNCING_ADDRESS} is on the suppression list (reason bounce)",
                    curl("GET", f"{url}/suppressions"),
                ),
                (
                    "Send to it again -> 422 naming to, with the reason and the date; nothing is sent",
                    curl("POST", f"{url}/documents/email", email),
                ),
                ("Send INV-3001 to Dana", curl("POST", f"{url}/documents/email", dana)),
                (
                    "Open it: fetch the pixel of the newest mail in the mail folder (200 image/gif)",
                    fetch_pixel,
                ),
                ("The entry is opened, with a count", curl("GET", f"{url}/emails?delivery_status=opened")),
            ]
        ),
    ]


QUEUED_INVOICES = 10


def queue_batch(stack: LocalStack) -> dict[str, Any]:
    """Ten invoice emails to the two demo customers, with the uploaded PDFs where there is one."""
    customers = list(demo_billing.CUSTOMERS.values())
    items = []
    for n in range(QUEUED_INVOICES):
        number = f"INV-{3001 + n}"
        customer = customers[n % 2]
        item: dict[str, Any] = {
            "document": {"type": "invoice", "number": number, "customer_name": customer["name"]},
            "to": [customer["email"]],
            "sender": "company",
        }
        upload = stack.demo_uploads.get(f"{number}.pdf")
        if upload:
            item["attachments"] = [{"upload_id": upload}]
        items.append(item)
    return {"items": items}


def queue_help(stack: LocalStack) -> list[str]:
    url = stack.api_url
    return [
        "  Email queue: many documents in one request; the worker sends them (202 at once).",
        "",
        *examples(
            [
                (
                    f"Queue {QUEUED_INVOICES} invoice emails -> 202, each item queued (or its own problem)",
                    curl("POST", f"{url}/documents/email/batch", queue_batch(stack)),
                ),
                ("What still waits (empty a moment later)", curl("GET", f"{url}/emails?status=queued")),
                ("They are sent: the newest entries of the sent log", curl("GET", f"{url}/emails?limit=10")),
            ]
        ),
    ]
