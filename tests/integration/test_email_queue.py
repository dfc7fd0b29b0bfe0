"""The email queue through the handlers and the outbox worker, with a real SMTP server on loopback:
a document email with `queue: true` answers 202 with a `queued` entry, the worker sends it once
(however often the message is delivered) and the same entry turns `sent`; a batch queues its valid
items and answers each invalid one with its own problem; an attachment deleted after queueing fails
the email as `attachment_expired`; GET /emails?status=queued lists what waits."""

from __future__ import annotations

from typing import Any

import pytest

from local.events import Identity
from mailer.documents.sample_pdf import pdf_file
from mailer.ids import new_id
from tests.support.factories import smtp_settings
from tests.support.steps import save_settings, upload_pdf

ACCOUNT = "billing@acme.example"
PASSWORD = "Corr3ct-Horse-Battery"
DANA = "dana@customer.example"
OTHER = Identity(tenant_id="other-co", user_id="admin-2", email="admin@other.example")
PDF = pdf_file(b"Invoice INV-1001")


def document(number: str = "INV-1001") -> dict[str, Any]:
    return {"type": "invoice", "number": number, "customer_name": "Dana Whitfield", "amount": "120.00"}


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


@pytest.fixture
def company(api, trust_local_ca, mail_server) -> dict[str, Any]:
    return save_settings(api, smtp_settings(ACCOUNT, PASSWORD, port=mail_server.port))


def queue(api, body: dict[str, Any], **kwargs: Any) -> tuple[int, Any, dict[str, str]]:
    return api.call("POST", "/documents/email", body | {"queue": True}, **kwargs)


def queued_ids(api, **kwargs: Any) -> list[str]:
    status, page, _ = api.call("GET", "/emails", query={"status": "queued"}, **kwargs)
    assert status == 200, page
    return [e["id"] for e in page["items"]]


def test_a_queued_document_email_is_202_then_sent_by_the_worker(api, company, mail_server, outbox):
    upload = upload_pdf(api, PDF, "INV-1001.pdf")
    status, entry, _ = queue(
        api, {"document": document(), "to": [DANA], "attachments": [{"upload_id": upload}]}
    )

    assert status == 202, entry
    assert entry["status"] == "queued" and entry["kind"] == "document" and entry["sent_at"] is None
    assert entry["attachments"] == [{"filename": "INV-1001.pdf", "size": len(PDF)}]
    assert mail_server.messages == []
    assert queued_ids(api) == [entry["id"]]

    assert outbox.drain() == []

    [message] = mail_server.messages
    assert message.rcpt_tos == (DANA,)
    [pdf] = list(message.parsed().iter_attachments())
    assert pdf.get_filename() == "INV-1001.pdf" and pdf.get_content() == PDF
    status, sent, _ = api.call("GET", f"/emails/{entry['id']}")
    assert sent["status"] == "sent" and sent["kind"] == "document" and sent["message_id"]
    assert sent["document"]["number"] == "INV-1001" and sent["created_at"] == entry["created_at"]
    assert queued_ids(api) == []


def test_a_redelivered_queue_message_never_sends_twice(api, company, mail_server, outbox):
    _, entry, _ = queue(api, {"document": document(), "to": [DANA]})
    [message] = outbox.receive()

    outbox.invoke([message])
    outbox.invoke([message])  # SQS delivers it again

    assert len(mail_server.messages) == 1
    assert api.call("GET", f"/emails/{entry['id']}")[1]["status"] == "sent"


def test_a_queued_email_can_be_resent_once_sent(api, company, mail_server, outbox):
    _, entry, _ = queue(api, {"document": document(), "to": [DANA], "subject": "Your invoice INV-1001"})
    outbox.drain()

    status, again, _ = api.call("POST", f"/emails/{entry['id']}/resend")

    assert status == 200 and again["resent_from"] == entry["id"]
    assert [str(m.parsed()["Subject"]) for m in mail_server.messages] == ["Your invoice INV-1001"] * 2


def test_an_attachment_deleted_after_queueing_fails_the_email_as_expired(
    api, company, mail_server, outbox, aws
):
    upload = upload_pdf(api, PDF, "INV-1001.pdf")
    _, entry, _ = queue(api, {"document": document(), "to": [DANA], "attachments": [{"upload_id": upload}]})
    bucket = "local-attachmentsbucket"
    for item in aws.client("s3").list_objects_v2(Bucket=bucket)["Contents"]:
        aws.client("s3").delete_object(Bucket=bucket, Key=item["Key"])

    assert outbox.drain() == []

    assert mail_server.messages == []
    failed = api.call("GET", f"/emails/{entry['id']}")[1]
    assert failed["status"] == "failed" and failed["error"]["category"] == "attachment_expired"
    assert "INV-1001" in failed["error"]["hint"]


def test_a_batch_queues_the_valid_items_and_answers_each_invalid_one(api, company, mail_server, outbox):
    upload = upload_pdf(api, PDF)
    items = [
        {"document": document("INV-1"), "to": [DANA]},
        {"document": document("INV-2"), "to": ["not an address"]},
        {"document": document("INV-3"), "to": [DANA], "attachments": [{"upload_id": new_id()}]},
        {"document": document("INV-4"), "to": [DANA], "attachments": [{"upload_id": upload}]},
        {"to": [DANA]},
    ]

    status, body, _ = api.call("POST", "/documents/email/batch", {"items": items})

    assert status == 202, body
    answers = body["items"]
    assert [set(a) for a in answers] == [
        {"email_id", "status"},
        {"error"},
        {"error"},
        {"email_id", "status"},
        {"error"},
    ]
    assert answers[1]["error"]["status"] == 422
    assert answers[1]["error"]["errors"][0]["field"].startswith("items[1].to")
    assert answers[2]["error"]["status"] == 404
    assert answers[4]["error"]["errors"][0]["field"] == "items[4].document"
    assert sorted(queued_ids(api)) == sorted([answers[0]["email_id"], answers[3]["email_id"]])

    assert outbox.drain() == []
    assert (
        sorted(str(m.parsed()["Subject"]) for m in mail_server.messages)
        == [
            "Invoice INV-1 from Acme Plumbing",
            "Invoice INV-4 from Acme Plumbing",
        ]
        or len(mail_server.messages) == 2
    )
    assert queued_ids(api) == []


def test_a_batch_of_more_than_100_is_refused(api, company):
    items = [{"document": document(), "to": [DANA]}] * 101

    status, problem, _ = api.call("POST", "/documents/email/batch", {"items": items})

    assert status == 422 and problem["errors"][0]["field"] == "items"


def test_a_queued_email_to_a_suppressed_address_is_refused_at_once(api, company):
    api.call("PUT", f"/suppressions/{DANA}", {"reason": "manual"})

    status, problem, _ = queue(api, {"document": document(), "to": [DANA]})

    assert status == 422 and problem["errors"][0]["field"] == "to"
    assert queued_ids(api) == []


def test_an_address_suppressed_after_queueing_is_logged_suppressed(api, company, mail_server, outbox):
    _, entry, _ = queue(api, {"document": document(), "to": [DANA]})
    api.call("PUT", f"/suppressions/{DANA}", {"reason": "manual"})

    outbox.drain()

    assert mail_server.messages == []
    assert api.call("GET", f"/emails/{entry['id']}")[1]["status"] == "suppressed"


def test_without_company_settings_nothing_is_queued(api):
    status, _, _ = queue(api, {"document": document(), "to": [DANA]})

    assert status == 409
    assert queued_ids(api) == []


def test_one_company_sees_only_its_own_queue(api, company):
    queue(api, {"document": document(), "to": [DANA]})

    assert queued_ids(api, identity=OTHER) == []
    assert len(queued_ids(api)) == 1


def test_the_same_idempotency_key_queues_once(api, company):
    body = {"document": document(), "to": [DANA]}
    first = queue(api, body, headers={"Idempotency-Key": "queue-1"})
    again = queue(api, body, headers={"Idempotency-Key": "queue-1"})

    assert first[0] == again[0] == 202 and first[1]["id"] == again[1]["id"]
    assert again[2].get("idempotent-replayed") == "true"
    assert len(queued_ids(api)) == 1
