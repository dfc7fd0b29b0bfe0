"""POST /invoices/{id}/remind through the handlers on moto, with a real SMTP server on loopback: the
rule's wording filled in with the invoice, its PDF attached byte for byte, the sent-log entry, the
refusals (paid, unknown, no address, another company's invoice), the budget and Idempotency-Key."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from local.events import USER, Identity
from local.smtp_server import RecordingHandler
from tests.support.factories import TIMEZONE, pdf_file, smtp_settings
from tests.support.steps import save_settings

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "billing@acme.example"
CUSTOMER = "dana@customer.example"
PAYMENT_URL = "https://pay.example/i/1001"
PDF = pdf_file(bytes(range(256)) * 4)
KEY = "8d1f4c2a-6b3e-4a5f-9e7d-1c2b3a4d5e6f"
OTHER_TENANT = Identity(tenant_id="other-co", user_id="admin-2", email="admin@other.example")


class RefusingHandler(RecordingHandler):
    """Refuses recipients at refused.example, as a real server refuses unknown mailboxes."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.endswith("@refused.example"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=RefusingHandler())


@pytest.fixture
def company(api, trust_local_ca, mail_server) -> dict[str, Any]:
    return save_settings(api, smtp_settings(ACCOUNT, PASSWORD, port=mail_server.port, timezone=TIMEZONE))


def upload(api, content: bytes = PDF, filename: str = "INV-1001.pdf") -> str:
    """POST /documents/uploads, then the PUT to the presigned address, as the frontend uploads."""
    request = {"filename": filename, "content_type": "application/pdf", "size": len(content)}
    status, ticket, _ = api.call("POST", "/documents/uploads", request)
    assert status == 201, ticket
    response = requests.put(ticket["url"], data=content, headers=ticket["headers"], timeout=10)
    assert response.status_code == 200
    return ticket["upload_id"]


def sync_invoice(api, invoice_id: str = "INV-1001", identity=None, **changes: Any) -> dict[str, Any]:
    customer = {"id": "C-17", "name": "Dana Whitfield", "email": CUSTOMER, "contact_method": "email"}
    body = {
        "number": invoice_id,
        "status": "open",
        "customer": customer | changes.pop("customer", {}),
        "issue_date": "2026-11-01",
        "due_date": "2026-12-01",
        "total": "120.00",
        "amount_due": "120.00",
        "currency": "USD",
        "payment_url": PAYMENT_URL,
        "pdf_upload_id": None,
    } | changes
    kwargs = {"identity": identity} if identity else {}
    status, saved, _ = api.call("PUT", f"/invoices/{invoice_id}", body, **kwargs)
    assert status == 200, saved
    return saved


def remind(api, invoice_id: str = "INV-1001", rule_id: str | None = None, **kwargs: Any):
    return api.call("POST", f"/invoices/{invoice_id}/remind", {"rule_id": rule_id}, **kwargs)


def test_reminder_arrives_with_the_rule_wording_the_payment_link_and_the_pdf(api, company, mail_server):
    sync_invoice(api, pdf_upload_id=upload(api))

    status, entry, _ = remind(api, identity=USER)  # any signed-in user of the company

    assert status == 200, entry
    [received] = mail_server.messages
    message = received.parsed()
    assert message["Subject"] == "Invoice INV-1001 is past due"  # the overdue rule's, filled in
    assert message["From"] == "Acme Plumbing <billing@acme.example>" and message["To"] == CUSTOMER
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert f'href="{PAYMENT_URL}"' in html and "120.00 USD" in html and "December 1, 2026" in html
    assert "Hello Dana," in text and "<p>" not in text
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "INV-1001.pdf" and attachment.get_content() == PDF
    assert "Auto-Submitted" not in message  # a person asked for it
    assert entry["message_id"] == message["Message-ID"]


def test_the_reminder_is_in_the_sent_log_as_an_invoice_reminder_of_the_invoice(api, company, mail_server):
    sync_invoice(api, pdf_upload_id=upload(api))

    _, entry, _ = remind(api, rule_id="overdue")
    status, logged, _ = api.call("GET", f"/emails/{entry['id']}")

    assert status == 200 and logged == entry
    assert (logged["kind"], logged["status"], logged["automation"]) == (
        "automation",
        "sent",
        "invoice_reminder",
    )
    assert logged["profile"] == "company" and logged["from"] == ACCOUNT and logged["to"] == [CUSTOMER]
    assert logged["document"]["type"] == "invoice" and logged["document"]["number"] == "INV-1001"
    assert logged["attachments"] == [{"filename": "INV-1001.pdf", "size": len(PDF)}]
    _, page, _ = api.call("GET", "/emails", query={"document_type": "invoice", "document_number": "INV-1001"})
    assert [item["id"] for item in page["items"]] == [entry["id"]]


def test_a_saved_rule_gives_its_own_wording_and_no_pdf_when_it_attaches_none(api, company, mail_server):
    rule = {
        "name": "Second notice",
        "offset_days": 14,
        "subject": "Second notice: [80], {{ invoice.amount_due }} {{ invoice.currency }}",
        "body_html": "<p>{{ customer.name }}, please pay at {{ invoice.payment_url }}</p>",
        "attach_pdf": False,
    }
    assert api.call("PUT", "/invoice-reminders/second", rule)[0] == 200
    sync_invoice(api, pdf_upload_id=upload(api))

    status, entry, _ = remind(api, rule_id="second")

    assert status == 200, entry
    message = mail_server.messages[0].parsed()
    assert message["Subject"] == "Second notice: INV-1001, 120.00 USD"
    assert f"Dana Whitfield, please pay at {PAYMENT_URL}" in message.get_body(("html",)).get_content()
    assert list(message.iter_attachments()) == [] and entry["attachments"] == []


@pytest.mark.parametrize("status_", ["paid", "void"])
def test_a_paid_or_void_invoice_gets_409_and_nothing_is_sent(api, company, mail_server, status_):
    sync_invoice(api, status=status_)

    status, problem, _ = remind(api)

    assert status == 409 and status_ in problem["detail"]
    assert mail_server.messages == []


@pytest.mark.parametrize(
    ("invoice_id", "rule_id"), [("INV-404", None), ("INV-1001", "no-such-rule")], ids=["invoice", "rule"]
)
def test_an_unknown_invoice_or_rule_is_404(api, company, mail_server, invoice_id, rule_id):
    sync_invoice(api)

    status, problem, _ = remind(api, invoice_id, rule_id)

    assert status == 404 and (invoice_id if rule_id is None else rule_id) in problem["detail"]
    assert mail_server.messages == []


@pytest.mark.parametrize("address", [None, "dana at customer"], ids=["none", "invalid"])
def test_a_customer_without_a_valid_address_is_422_naming_customer_email(api, company, mail_server, address):
    sync_invoice(api, customer={"email": address, "contact_method": "text"})

    status, problem, _ = remind(api)

    assert status == 422 and [e["field"] for e in problem["errors"]] == ["customer.email"]
    assert mail_server.messages == []


def test_another_companys_invoice_is_404(api, company, mail_server):
    sync_invoice(api, "INV-OTHER", identity=OTHER_TENANT)

    status, _, _ = remind(api, "INV-OTHER")

    assert status == 404 and mail_server.messages == []


def test_over_the_per_minute_budget_the_second_reminder_is_429_and_not_sent(api, trust_local_ca, mail_server):
    settings = smtp_settings(ACCOUNT, PASSWORD, port=mail_server.port, limits={"per_minute": 1})
    save_settings(api, settings)
    sync_invoice(api)
    into = time.time() % 60
    if into > 50:  # both sends in one per-minute window
        time.sleep(60.5 - into)

    first, _, _ = remind(api)
    status, problem, headers = remind(api)

    assert first == 200
    assert status == 429 and problem["limit"] == "per_minute" and int(headers["retry-after"]) >= 1
    assert len(mail_server.messages) == 1


def test_the_same_idempotency_key_twice_sends_one_mail_and_replays_the_answer(api, company, mail_server):
    sync_invoice(api)

    first = remind(api, headers={"Idempotency-Key": KEY})
    second = remind(api, headers={"Idempotency-Key": KEY})

    assert first[0] == second[0] == 200 and first[1] == second[1]
    assert second[2].get("idempotent-replayed") == "true" and "idempotent-replayed" not in first[2]
    assert len(mail_server.messages) == 1


def test_a_refused_recipient_is_502_with_the_failed_entry_in_the_sent_log(api, company, mail_server):
    sync_invoice(api, customer={"email": "dana@refused.example"})

    status, problem, _ = remind(api)

    assert status == 502 and problem["email_id"]
    _, logged, _ = api.call("GET", f"/emails/{problem['email_id']}")
    assert logged["status"] == "failed" and logged["automation"] == "invoice_reminder"
    assert mail_server.messages == []
