"""Write the sample events for `sam local invoke -e events/<name>.json`: `python -m local.make_events`.

One event per API route, built like the local HTTP server builds them, with stable ids so that running
this again changes nothing unless the bodies or the base event change.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from local.events import ADMIN, HttpRequest, http_event, json_request
from local.template import ROOT

EVENTS = ROOT / "events"

OFFICE365 = {
    "transport": "smtp",
    "provider": "office365",
    "host": "smtp.office365.com",
    "port": 587,
    "security": "starttls",
    "username": "billing@acme.example",
    "password": "replace-with-the-mailbox-password",
    "from_name": "Acme Plumbing Billing",
    "from_email": "billing@acme.example",
    "bcc": "archive@acme.example",
    "reply_to": None,
    "notify_email": "owner@acme.example",
    "timezone": "America/Chicago",
}

UNSAVED = {k: v for k, v in OFFICE365.items() if k not in ("notify_email", "timezone")} | {
    "to": "owner@acme.example"
}


INVOICE = {
    "type": "invoice",
    "number": "INV-1001",
    "customer_name": "Dana Whitfield",
    "amount": "1250.00",
    "currency": "USD",
    "due_date": "2026-12-01",
}
INVOICE_WORDING = {
    "subject": "Invoice [51] from [40]",
    "body_html": "<p>Dear {{ document.customer_name }},</p><p>Invoice {{ document.number }} for "
    "{{ document.amount }} is attached, due {{ document.due_date }}.</p><p>{{ sender.name }}</p>",
}
UPLOAD = {"filename": "INV-1001.pdf", "content_type": "application/pdf", "size": 48213}
EMAIL_ID = "01KAW3M0Q8ZC6V9D5XG8T2B4RN"
DOCUMENT_EMAIL = {
    "document": INVOICE,
    "to": ["dana.whitfield@example.com"],
    "cc": [],
    "bcc": [],
    "subject": None,
    "body_html": None,
    "attachments": [{"upload_id": "01KAW3KZ4T7M2Q9X8B6N5C3D1E"}],
    "sender": "auto",
}
REMINDER = {
    "active": True,
    "days_before": 1,
    "subject": "Reminder: your appointment on [20], [21]",
    "body_html": "<p>Hello {{ customer.first_name }},</p><p>We will see you on [21] at "
    "{{ work_order.arrival_window }}.</p><p>{{ company.name }}</p>",
}
WORK_ORDER = {
    "number": "WO-1001",
    "status": "scheduled",
    "confirmation_status": "none",
    "scheduled_start": "2026-11-24T09:00:00-06:00",
    "scheduled_end": "2026-11-24T11:00:00-06:00",
    "parent_id": None,
    "customer": {"name": "Dana Whitfield", "email": "dana.whitfield@example.com", "contact_method": "email"},
    "technician": {"name": "Luis Ortega", "photo_upload_id": None},
    "site_address": "1420 W Elm St, Springfield",
    "description": "Annual furnace tune-up",
}


def samples() -> dict[str, HttpRequest]:
    settings, test = "/settings/{profile}", "/settings/{profile}/test"
    doc_template, automation = "/document-templates/{document_type}", "/automations/{automation_type}"
    work_order = "/work-orders/{work_order_id}"
    return {
        "providers-get": json_request("GET", "/providers", "/providers"),
        "settings-get": json_request("GET", "/settings/company", settings, profile="company"),
        "settings-put": json_request("PUT", "/settings/company", settings, OFFICE365, profile="company"),
        "settings-delete": json_request("DELETE", "/settings/company", settings, profile="company"),
        "test-saved": json_request(
            "POST", "/settings/company/test", test, {"to": "owner@acme.example"}, profile="company"
        ),
        "test-unsaved": json_request("POST", "/settings/test", "/settings/test", UNSAVED),
        "merge-fields-get": json_request("GET", "/merge-fields", "/merge-fields"),
        "document-templates-list": json_request("GET", "/document-templates", "/document-templates"),
        "document-template-get": json_request(
            "GET", "/document-templates/invoice", doc_template, document_type="invoice"
        ),
        "document-template-put": json_request(
            "PUT", "/document-templates/invoice", doc_template, INVOICE_WORDING, document_type="invoice"
        ),
        "document-template-delete": json_request(
            "DELETE", "/document-templates/invoice", doc_template, document_type="invoice"
        ),
        "document-upload": json_request("POST", "/documents/uploads", "/documents/uploads", UPLOAD),
        "document-preview": json_request(
            "POST", "/documents/preview", "/documents/preview", {"document": INVOICE, "sender": "auto"}
        ),
        "document-email": json_request("POST", "/documents/email", "/documents/email", DOCUMENT_EMAIL),
        "document-email-batch": json_request(
            "POST",
            "/documents/email/batch",
            "/documents/email/batch",
            {"items": [DOCUMENT_EMAIL, DOCUMENT_EMAIL | {"to": ["not an address"]}]},
        ),
        "emails-list": HttpRequest(
            method="GET",
            path="/emails",
            route="/emails",
            query={"document_type": "invoice", "document_number": "INV-1001", "limit": "25"},
        ),
        "email-get": json_request("GET", f"/emails/{EMAIL_ID}", "/emails/{email_id}", email_id=EMAIL_ID),
        "email-resend": json_request(
            "POST", f"/emails/{EMAIL_ID}/resend", "/emails/{email_id}/resend", email_id=EMAIL_ID
        ),
        "automations-list": json_request("GET", "/automations", "/automations"),
        "automation-get": json_request(
            "GET", "/automations/reminder", automation, automation_type="reminder"
        ),
        "automation-put": json_request(
            "PUT", "/automations/reminder", automation, REMINDER, automation_type="reminder"
        ),
        "automation-preview": json_request(
            "POST",
            "/automations/reminder/preview",
            automation + "/preview",
            {"work_order_id": "WO-1001"},
            automation_type="reminder",
        ),
        "reminder-run": json_request(
            "POST", "/automations/reminder/run", "/automations/reminder/run", {"date": "2026-11-23"}
        ),
        "work-order-put": json_request(
            "PUT", "/work-orders/WO-1001", work_order, WORK_ORDER, work_order_id="WO-1001"
        ),
        "work-order-get": json_request("GET", "/work-orders/WO-1001", work_order, work_order_id="WO-1001"),
        "work-order-status": json_request(
            "POST",
            "/work-orders/WO-1001/status",
            work_order + "/status",
            {"status": "en_route", "notify": True},
            work_order_id="WO-1001",
        ),
        "work-order-remind": json_request(
            "POST", "/work-orders/WO-1001/remind", work_order + "/remind", {}, work_order_id="WO-1001"
        ),
        "oauth-start": json_request(
            "POST",
            "/oauth/microsoft/start",
            "/oauth/{provider}/start",
            {
                "profile": "company",
                "transport": "api",
                "return_to": None,
                "login_hint": "billing@acme.example",
            },
            provider="microsoft",
        ),
        # The provider's redirect: no JWT, the state (from oauth-start's answer) identifies the caller.
        "oauth-callback": HttpRequest(
            method="GET",
            path="/oauth/callback",
            route="/oauth/callback",
            query={"code": "replace-with-the-code", "state": "replace-with-the-state"},
        ),
    }


INVOICE_SYNC = {
    "number": "INV-1001",
    "status": "open",
    "customer": {
        "id": "C-17",
        "name": "Dana Whitfield",
        "email": "dana.whitfield@example.com",
        "contact_method": "email",
    },
    "issue_date": "2026-11-01",
    "due_date": "2026-12-01",
    "total": "1250.00",
    "amount_due": "1250.00",
    "currency": "USD",
    "payment_url": "https://pay.example/i/1001",
    "pdf_upload_id": None,
}
INVOICE_RULE = {
    "name": "Overdue",
    "active": True,
    "offset_days": 7,
    "repeat_every_days": 7,
    "max_sends": 4,
    "min_amount_due": "0.01",
    "subject": "Invoice [80] is past due",
    "body_html": "<p>Hello {{ customer.first_name }},</p><p>{{ invoice.amount_due }} {{ invoice.currency }} "
    "is still open on invoice {{ invoice.number }}, due {{ invoice.due_date }}.</p><p>{{ company.name }}</p>",
    "body_text": None,
    "attach_pdf": True,
}


def invoice_samples() -> dict[str, HttpRequest]:
    invoice, rule = "/invoices/{invoice_id}", "/invoice-reminders/{rule_id}"
    return {
        "invoice-put": json_request(
            "PUT", "/invoices/INV-1001", invoice, INVOICE_SYNC, invoice_id="INV-1001"
        ),
        "invoice-get": json_request("GET", "/invoices/INV-1001", invoice, invoice_id="INV-1001"),
        "invoice-remind": json_request(
            "POST",
            "/invoices/INV-1001/remind",
            invoice + "/remind",
            {"rule_id": "overdue"},
            invoice_id="INV-1001",
        ),
        "customer-invoices": HttpRequest(
            method="GET",
            path="/customers/C-17/invoices",
            route="/customers/{customer_id}/invoices",
            path_parameters={"customer_id": "C-17"},
            query={"status": "open"},
        ),
        "invoice-rules-list": json_request("GET", "/invoice-reminders", "/invoice-reminders"),
        "invoice-rule-get": json_request("GET", "/invoice-reminders/overdue", rule, rule_id="overdue"),
        "invoice-rule-put": json_request(
            "PUT", "/invoice-reminders/overdue", rule, INVOICE_RULE, rule_id="overdue"
        ),
        "invoice-rule-delete": json_request("DELETE", "/invoice-reminders/overdue", rule, rule_id="overdue"),
        "invoice-rule-preview": json_request(
            "POST",
            "/invoice-reminders/overdue/preview",
            rule + "/preview",
            {"invoice_id": "INV-1001"},
            rule_id="overdue",
        ),
        "invoice-reminders-run": json_request(
            "POST", "/invoice-reminders/run", "/invoice-reminders/run", {"date": "2026-12-08"}
        ),
        "statement-schedule-get": json_request("GET", "/statements/schedule", "/statements/schedule"),
        "statement-schedule-put": json_request(
            "PUT", "/statements/schedule", "/statements/schedule", STATEMENT_SCHEDULE
        ),
        "statement-preview": json_request(
            "POST", "/statements/preview", "/statements/preview", {"customer_id": "C-17"}
        ),
        "statements-run": json_request("POST", "/statements/run", "/statements/run", {"date": "2026-12-01"}),
        "customer-statement": json_request(
            "POST",
            "/customers/C-17/statement",
            "/customers/{customer_id}/statement",
            None,
            customer_id="C-17",
        ),
    }


STATEMENT_SCHEDULE = {
    "active": True,
    "frequency": "monthly",
    "day": 1,
    "min_balance": "0.01",
    "subject": "Your statement from {{ company.name }}",
    "body_html": "<p>Hello {{ customer.first_name }},</p><p>You owe {{ statement.total_due }}.</p>",
    "attach_invoices": False,
}


def document_event_samples() -> dict[str, HttpRequest]:
    automation = "/document-automations/{event}"
    shipped = {
        "event": "shipment.shipped",
        "active": True,
        "subject": "Your order {{ document.number }} has shipped",
        "body_html": "<p>Hello {{ document.customer_name }},</p><p>Your order is on its way.</p>",
        "attach_document": True,
        "sender": "company",
    }
    raised = {
        "event": "shipment.shipped",
        "document": {"type": "packing_slip", "number": "PS-5001", "customer_name": "Dana Whitfield"},
        "to": ["dana@customer.example"],
        "attachments": [],
    }
    return {
        "document-automations-list": json_request("GET", "/document-automations", "/document-automations"),
        "document-automation-get": json_request(
            "GET", "/document-automations/shipment.shipped", automation, event="shipment.shipped"
        ),
        "document-automation-put": json_request(
            "PUT", "/document-automations/shipment.shipped", automation, shipped, event="shipment.shipped"
        ),
        "document-automation-preview": json_request(
            "POST",
            "/document-automations/shipment.shipped/preview",
            automation + "/preview",
            {"document": None},
            event="shipment.shipped",
        ),
        "document-event": json_request("POST", "/documents/events", "/documents/events", raised),
        "suppressions-list": json_request("GET", "/suppressions", "/suppressions"),
        "open-pixel": json_request(
            "GET", "/t/not-a-real-token.gif", "/t/{name}", name="not-a-real-token.gif"
        ),
        "suppression-put": json_request(
            "PUT",
            "/suppressions/dana@customer.example",
            "/suppressions/{email}",
            {"reason": "manual"},
            email="dana@customer.example",
        ),
        "suppression-delete": json_request(
            "DELETE",
            "/suppressions/dana@customer.example",
            "/suppressions/{email}",
            email="dana@customer.example",
        ),
    }


PUBLIC = {"oauth-callback", "open-pixel"}  # sent without the authorizer's claims, as API Gateway sends them


def stable(event: dict[str, Any]) -> dict[str, Any]:
    """The request id and time of the base sample, not of this run."""
    base = json.loads((EVENTS / "api-base.json").read_text())["requestContext"]
    for key in ("requestId", "timeEpoch"):
        event["requestContext"][key] = base[key]
    return event


def sqs_sample(body: dict[str, Any], message_id: str, queue: str) -> dict[str, Any]:
    """An SQS event of one record holding `body`, as Lambda's event source delivers it."""
    text = json.dumps(body)
    return {
        "Records": [
            {
                "messageId": message_id,
                "receiptHandle": "sample-receipt-handle",
                "body": text,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1795435200000",
                    "SenderId": "123456789012",
                    "ApproximateFirstReceiveTimestamp": "1795435200100",
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(),
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:us-east-1:123456789012:{queue}",
                "awsRegion": "us-east-1",
            }
        ]
    }


def other_events() -> dict[str, dict[str, Any]]:
    """The events of the functions that are not behind the API: the schedule and the queue."""
    body = {
        "tenant_id": "demo",
        "automation": "reminder",
        "work_order_id": "WO-1001",
        "occurrence": "2026-11-24",
    }
    return {
        "reminder-schedule": {
            "version": "0",
            "id": "5f1a9e3c-7d2b-4c8e-9a61-0b3e2d4f5a67",
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler",
            "account": "123456789012",
            "time": "2026-11-23T18:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": "{}",
        },
        # The tick's input: the schedule passes <aws.scheduler.scheduled-time> (template.yaml).
        "schedule-tick": {"scheduled_time": "2026-11-23T18:00:00Z"},
        "plan-batch": sqs_sample(
            {"tenant_id": "demo", "date": "2026-11-23"},
            "0c9d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f",
            "company-mail-PlanQueue",
        ),
        "outbox-batch": sqs_sample(body, "7b0c3f7e-9a1d-4d6b-8f3e-2c5a1b9d0e41", "company-mail-OutboxQueue"),
    }


SES_MESSAGE_ID = "0100019ad4c3e5b1-7f3e2a1b-4c5d-4e6f-8a9b-0c1d2e3f4a5b-000000"
SES_MAIL = {
    "timestamp": "2026-11-24T15:00:01.120Z",
    "source": "Acme Plumbing Billing <billing@acme.example>",
    "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/acme.example",
    "sendingAccountId": "123456789012",
    "messageId": SES_MESSAGE_ID,
    "destination": ["dana@customer.example"],
    "headersTruncated": False,
    "commonHeaders": {
        "from": ["Acme Plumbing Billing <billing@acme.example>"],
        "to": ["dana@customer.example"],
        "subject": "Invoice INV-1001 from Acme Plumbing",
    },
    "tags": {"ses:configuration-set": ["company-mail-tracking"]},
}
SES_DETAILS: dict[str, tuple[str, str, dict[str, Any]]] = {
    # sample name: (EventBridge detail-type, SES eventType, the record's own object)
    "ses-send": ("Email Sent", "Send", {"send": {}}),
    "ses-delivery": (
        "Email Delivered",
        "Delivery",
        {
            "delivery": {
                "timestamp": "2026-11-24T15:00:02.480Z",
                "processingTimeMillis": 1360,
                "recipients": ["dana@customer.example"],
                "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "a8-30.smtp-out.amazonses.com",
            }
        },
    ),
    "ses-bounce": (
        "Email Bounced",
        "Bounce",
        {
            "bounce": {
                "bounceType": "Permanent",
                "bounceSubType": "General",
                "bouncedRecipients": [
                    {
                        "emailAddress": "dana@customer.example",
                        "action": "failed",
                        "status": "5.1.1",
                        "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                    }
                ],
                "timestamp": "2026-11-24T15:00:03.010Z",
                "feedbackId": "0100019ad4c3f1a2-3b4c5d6e-7f80-4a1b-9c2d-3e4f5a6b7c8d-000000",
                "reportingMTA": "dsn; a8-30.smtp-out.amazonses.com",
            }
        },
    ),
    "ses-complaint": (
        "Email Complaint Received",
        "Complaint",
        {
            "complaint": {
                "feedbackId": "0100019ad4c40b7e-9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d-000000",
                "complaintSubType": None,
                "complainedRecipients": [{"emailAddress": "dana@customer.example"}],
                "timestamp": "2026-11-24T17:12:40.000Z",
                "userAgent": "Mozilla/5.0",
                "complaintFeedbackType": "abuse",
                "arrivalDate": "2026-11-24T17:12:39.000Z",
            }
        },
    ),
    "ses-delivery-delay": (
        "Email Delivery Delayed",
        "DeliveryDelay",
        {
            "deliveryDelay": {
                "timestamp": "2026-11-24T15:30:00.000Z",
                "delayType": "MailboxFull",
                "expirationTime": "2026-11-25T15:00:01.120Z",
                "delayedRecipients": [
                    {
                        "emailAddress": "dana@customer.example",
                        "status": "4.2.2",
                        "diagnosticCode": "smtp; 452 4.2.2 Mailbox full",
                    }
                ],
            }
        },
    ),
    "ses-reject": ("Email Rejected", "Reject", {"reject": {"reason": "Bad content"}}),
}


def ses_events() -> dict[str, dict[str, Any]]:
    """SES events as EventBridge delivers them from the stack's configuration set (TrackingFunction)."""
    found = {}
    for name, (detail_type, event_type, part) in SES_DETAILS.items():
        digest = hashlib.sha256(name.encode()).hexdigest()
        found[name] = {
            "version": "0",
            "id": f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}",
            "detail-type": detail_type,
            "source": "aws.ses",
            "account": "123456789012",
            "time": "2026-11-24T15:00:03Z",
            "region": "us-east-1",
            "resources": ["arn:aws:ses:us-east-1:123456789012:configuration-set/company-mail-tracking"],
            "detail": {"eventType": event_type, "mail": SES_MAIL} | part,
        }
    return found


def main() -> None:
    written = {
        name: stable(http_event(request, None if name in PUBLIC else ADMIN))
        for name, request in (samples() | invoice_samples() | document_event_samples()).items()
    }
    for name, event in (written | other_events() | ses_events()).items():
        path = EVENTS / f"{name}.json"
        path.write_text(json.dumps(event, indent=2) + "\n")
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
