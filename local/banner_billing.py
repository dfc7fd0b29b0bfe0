"""The banner's invoice part: invoice reminders, statements and document events on the demo data."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from local import demo_billing, demo_data
from local.banner_text import curl, examples
from local.stack import LocalStack


def _overdue_rule() -> dict[str, Any]:
    from mailer.billing.rules import DEFAULT_RULES  # the layer is on the path once the stack runs

    return dict(DEFAULT_RULES["overdue"]) | {"active": True}


def _invoice_examples(url: str, today: date) -> list[tuple[str, str]]:
    first, second = (
        today + timedelta(days=n) for n in (demo_billing.OVERDUE_RUN_DAYS, demo_billing.NEXT_OVERDUE_RUN_DAYS)
    )
    paid = demo_billing.demo_invoices(today)["INV-3003"] | {"status": "paid", "amount_due": "0.00"}
    reminded = " and ".join(demo_billing.OVERDUE_REMINDED)
    return [
        (
            "Switch the overdue rule on (7 days after the due date, every 7 days, 4 sends at most)",
            curl("PUT", f"{url}/invoice-reminders/overdue", _overdue_rule()),
        ),
        (
            f'The invoice reminders of {first} -> {{"queued": 2}}: {reminded}, each with its PDF and '
            "its payment link (run it again: 0)",
            curl("POST", f"{url}/invoice-reminders/run", {"date": first.isoformat()}),
        ),
        ("Dana pays INV-3003", curl("PUT", f"{url}/invoices/INV-3003", paid)),
        (
            f'A week later, {second} -> {{"queued": 1}}: only INV-3004; the paid INV-3003 gets nothing more',
            curl("POST", f"{url}/invoice-reminders/run", {"date": second.isoformat()}),
        ),
        (
            "The reminders of INV-3004 in the sent log (automation invoice_reminder)",
            curl("GET", f"{url}/emails?document_type=invoice&document_number=INV-3004"),
        ),
        (
            "A reminder now, on request, with the overdue rule's wording",
            curl("POST", f"{url}/invoices/INV-3001/remind", {"rule_id": "overdue"}),
        ),
    ]


def _event_examples(stack: LocalStack) -> list[tuple[str, str]]:
    url, slip = stack.api_url, demo_billing.PACKING_SLIP
    raised = {
        "event": "shipment.shipped",
        "document": {"type": "packing_slip", "number": slip, "customer_name": "Dana Whitfield"},
        "to": [demo_billing.CUSTOMERS["C-101"]["email"]],
        "attachments": [{"upload_id": stack.demo_uploads.get(f"{slip}.pdf", "<upload id>")}],
    }
    return [
        (
            f'Raise shipment.shipped for {slip} -> {{"queued": true, "email_id": ...}}: the worker sends '
            f"the confirmation with the packing slip {slip}.pdf attached",
            curl("POST", f"{url}/documents/events", raised),
        ),
        (
            'An event the company has not switched on -> {"queued": false, "reason": ...}',
            curl("POST", f"{url}/documents/events", raised | {"event": "bill.paid"}),
        ),
        ("The six events and their wording", curl("GET", f"{url}/document-automations")),
    ]


def _statement_examples(url: str, today: date) -> list[tuple[str, str]]:
    from mailer.billing.statement_models import DEFAULT_SCHEDULE

    weekly = dict(DEFAULT_SCHEDULE) | {"active": True, "frequency": "weekly", "day": today.isoweekday()}
    return [
        (
            f"Statements every week on {today:%A}s (weekday {today.isoweekday()}), with the default table",
            curl("PUT", f"{url}/statements/schedule", weekly),
        ),
        (
            f'The statements of today, {today} -> {{"queued": 2}}: one to Dana, one to Marcus, each '
            "listing their open invoices and the total (run it again: 0)",
            curl("POST", f"{url}/statements/run", {"date": today.isoformat()}),
        ),
        ("Marcus's statement now, on request", curl("POST", f"{url}/customers/C-102/statement")),
    ]


def billing_help(stack: LocalStack) -> list[str]:
    url, today = stack.api_url, stack.demo_today or demo_data.today_in()
    return [
        "  Invoices: INV-3001..INV-3005 of Dana Whitfield (C-101) and Marcus Lee (C-102) are synced around",
        f"  today, {today}: due in 3 days, due today, 8 and 15 days overdue, and one paid. Every invoice",
        f"  reminder rule starts inactive (GET {url}/invoice-reminders).",
        "",
        *examples(_invoice_examples(url, today)),
        "  Statements: one email per customer with open invoices, on the schedule's day.",
        "",
        *examples(_statement_examples(url, today)),
        "  Document events: shipment.shipped is active for the demo company; a packing slip is uploaded.",
        "",
        *examples(_event_examples(stack)),
    ]
