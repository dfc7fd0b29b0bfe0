"""A document email's sent-log entry is never lost to a throttled sent log.

The customer has the email once the server took it, so the id the caller gets must be found by
`GET /emails/{id}` and be resendable. The sent log is tried a few times within a second; after that
the entry (with the stored request its resend needs) waits on the outbox queue as a `sent_log`
message, which the worker writes with the same id. Only a queue that refuses too loses it, logged.

Through the handlers on moto, with a real SMTP server on loopback; AWS faults are injected below
the stores (tests.support.faults), and the `outbox` fixture runs the worker on what was queued.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from local.template import Template
from mailer.documents.service import SENT_LOG_TRIES
from tests.support.api import Api
from tests.support.factories import TIMEZONE, pdf_file, smtp_settings
from tests.support.faults import AwsFaults
from tests.support.steps import save_settings

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "billing@acme.example"
CUSTOMER = "dana@customer.example"
PDF = pdf_file(b"BT /F1 12 Tf (Invoice INV-1001) Tj ET")
INVOICE = {
    "type": "invoice",
    "number": "INV-1001",
    "customer_name": "Dana Whitfield",
    "amount": "1250.00",
    "currency": "USD",
    "due_date": "2026-12-01",
}
THROTTLED = "ProvisionedThroughputExceededException"
SENT_LOG_PUT = ("dynamodb", "PutItem")


@pytest.fixture
def mail_server(smtp_server: Any) -> Any:
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


@pytest.fixture
def company(api: Api, trust_local_ca: Any, mail_server: Any) -> None:
    save_settings(api, smtp_settings(ACCOUNT, PASSWORD, port=mail_server.port, timezone=TIMEZONE))


def upload(api: Api) -> str:
    """POST /documents/uploads, then the PUT to the presigned address; the upload id."""
    status, ticket, _ = api.call(
        "POST",
        "/documents/uploads",
        {"filename": "INV-1001.pdf", "content_type": "application/pdf", "size": len(PDF)},
    )
    assert status == 201, ticket
    response = requests.put(ticket["url"], data=PDF, headers=ticket["headers"], timeout=10)
    assert response.status_code == 200
    return str(ticket["upload_id"])


def email_invoice(api: Api) -> tuple[int, dict[str, Any]]:
    body = {"document": INVOICE, "to": [CUSTOMER], "attachments": [{"upload_id": upload(api)}]}
    status, answer, _ = api.call("POST", "/documents/email", body)
    return status, answer


def throttle_sent_log_puts(
    template: Template, monkeypatch: pytest.MonkeyPatch, *, times: int | None = None
) -> AwsFaults:
    """PutItem on the sent log throttled (the first `times` calls, or every one until `clear()`)."""
    faults = AwsFaults(monkeypatch)
    table = template.names.ref("SentLogTable")
    calls = {"n": 0}

    def selected(_service: str, _operation: str, params: dict[str, Any]) -> bool:
        if params.get("TableName") != table:
            return False
        calls["n"] += 1
        return times is None or calls["n"] <= times

    faults.fail("dynamodb", THROTTLED, operations=("PutItem",), when=selected)
    return faults


def test_an_entry_the_sent_log_refuses_is_queued_then_found_and_resendable(
    api, template, company, mail_server, outbox, monkeypatch
):
    # Given the sent log throttles every write of the document email
    faults = throttle_sent_log_puts(template, monkeypatch)

    # When the invoice is emailed
    status, entry = email_invoice(api)

    # Then the customer got it once, the answer is the entry, and the sent log was tried, at
    # most SENT_LOG_TRIES times within its second (fewer when a try is slow: the caller waits)
    assert status == 200, entry
    assert (entry["status"], entry["kind"], entry["to"]) == ("sent", "document", [CUSTOMER])
    [received] = mail_server.messages
    assert list(received.rcpt_tos) == [CUSTOMER]
    assert 1 <= faults.failed.count(SENT_LOG_PUT) <= SENT_LOG_TRIES
    faults.clear()
    assert api.call("GET", f"/emails/{entry['id']}")[0] == 404  # waiting on the queue

    # And once the worker has written what waits on the queue, the entry is found, the same
    assert outbox.drain() == []
    status, found, _ = api.call("GET", f"/emails/{entry['id']}")
    assert status == 200 and found == entry

    # And it can be resent: the stored request (wording, attachment version) came through the queue
    status, again, _ = api.call("POST", f"/emails/{entry['id']}/resend")
    assert status == 200, again
    assert again["resent_from"] == entry["id"] and again["id"] != entry["id"]
    first, second = (m.parsed() for m in mail_server.messages)
    assert second["Subject"] == first["Subject"]
    assert next(iter(second.iter_attachments())).get_content() == PDF


def test_a_sent_log_that_recovers_on_a_retry_keeps_the_entry_without_the_queue(
    api, template, company, mail_server, outbox, monkeypatch
):
    faults = throttle_sent_log_puts(template, monkeypatch, times=1)

    status, entry = email_invoice(api)

    assert status == 200, entry
    assert faults.failed.count(SENT_LOG_PUT) == 1
    assert api.call("GET", f"/emails/{entry['id']}")[1] == entry
    assert outbox.receive() == []  # nothing was queued
    assert len(mail_server.messages) == 1


def test_when_the_queue_refuses_too_the_answer_stands_and_the_loss_is_logged(
    api, template, company, mail_server, outbox, monkeypatch, caplog
):
    faults = throttle_sent_log_puts(template, monkeypatch)
    faults.fail("sqs", "AWS.SimpleQueueService.ServiceUnavailable", operations=("SendMessageBatch",))

    status, entry = email_invoice(api)

    assert status == 200 and entry["status"] == "sent"
    assert len(mail_server.messages) == 1
    faults.clear()
    assert outbox.receive() == []
    assert api.call("GET", f"/emails/{entry['id']}")[0] == 404
    [logged] = [r for r in caplog.records if r.getMessage() == "sent log write failed"]
    assert (logged.levelname, vars(logged)["email_id"]) == ("ERROR", entry["id"])
    assert PASSWORD not in "\n".join(json.dumps(vars(r), default=str) for r in caplog.records)
