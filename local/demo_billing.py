"""Invoices and customers of the demo tenant, relative to a day, as its invoicing application would
sync them, with what each of the banner's commands should queue.

- Dana Whitfield (C-101): INV-3001 due in 3 days, INV-3003 8 days overdue, INV-3005 paid.
- Marcus Lee (C-102): INV-3002 due today, INV-3004 15 days overdue.

The overdue rule (7 days after the due date, every 7 days, 4 sends at most) reminds INV-3003 and
INV-3004 on the run of today + 6 (their 1st and 2nd overdue reminders); once INV-3003 is paid, the
run of today + 13 reminds only INV-3004.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

OVERDUE_RUN_DAYS = 6  # the overdue rule's run that reminds both overdue invoices
OVERDUE_REMINDED = ("INV-3003", "INV-3004")
NEXT_OVERDUE_RUN_DAYS = 13
CUSTOMERS = {
    "C-101": {"name": "Dana Whitfield", "email": "dana@customers.demo.test"},
    "C-102": {"name": "Marcus Lee", "email": "marcus@customers.demo.test"},
}
WITH_PDF = ("INV-3003", "INV-3004")
PACKING_SLIP = "PS-5001"  # the packing slip uploaded for the shipment.shipped event
ACTIVE_EVENTS = ("shipment.shipped",)  # document events switched on for the demo company


def demo_invoices(today: date) -> dict[str, dict[str, Any]]:
    """Invoice id -> PUT /invoices/{id} body (pdf_upload_id set by the seeding, for WITH_PDF)."""

    def invoice(number: str, customer: str, due: date, amount: str, status: str = "open") -> dict[str, Any]:
        return {
            "number": number,
            "status": status,
            "customer": {"id": customer, **CUSTOMERS[customer], "contact_method": "email"},
            "issue_date": (due - timedelta(days=30)).isoformat(),
            "due_date": due.isoformat(),
            "total": amount,
            "amount_due": "0.00" if status == "paid" else amount,
            "currency": "USD",
            "payment_url": f"https://pay.demo.test/i/{number}",
            "pdf_upload_id": None,
        }

    return {
        "INV-3001": invoice("INV-3001", "C-101", today + timedelta(days=3), "240.00"),
        "INV-3002": invoice("INV-3002", "C-102", today, "95.50"),
        "INV-3003": invoice("INV-3003", "C-101", today - timedelta(days=8), "410.00"),
        "INV-3004": invoice("INV-3004", "C-102", today - timedelta(days=15), "1250.00"),
        "INV-3005": invoice("INV-3005", "C-101", today - timedelta(days=8), "60.00", status="paid"),
    }


def invoice_pdf(body: dict[str, Any]) -> bytes:
    from mailer.documents.sample_pdf import text_page  # the layer is on the path once the stack runs

    return text_page(
        "Demo Plumbing & Heating",
        f"Invoice {body['number']}",
        f"Customer: {body['customer']['name']}",
        f"Due: {body['due_date']}",
        f"Amount due: {body['amount_due']} {body['currency']}",
    )


def packing_slip(number: str) -> bytes:
    from mailer.documents.sample_pdf import text_page

    return text_page("Demo Plumbing & Heating", f"Packing slip {number}", "1 x Water heater, 50 gal")
