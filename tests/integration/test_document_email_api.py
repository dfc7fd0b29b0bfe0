"""Document email through the handlers: real uploads to (moto) S3, real SMTP on loopback, the sent log."""

from __future__ import annotations

import pytest
import requests

from local.events import USER, Identity
from local.smtp_server import RecordingHandler
from tests.support.factories import TIMEZONE, pdf_file, smtp_settings

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "billing@acme.example"
PDF = pdf_file(bytes(range(256)) * 8)  # every byte value, in the page's content stream
INVOICE = {
    "type": "invoice",
    "number": "INV-1001",
    "customer_name": "Dana Whitfield",
    "amount": "1250.00",
    "currency": "USD",
    "due_date": "2026-12-01",
}


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
def company(api, trust_local_ca, mail_server):
    settings = smtp_settings(
        ACCOUNT, PASSWORD, port=mail_server.port, bcc="archive@acme.example", timezone=TIMEZONE
    )
    assert api.call("PUT", "/settings/company", settings)[0] == 200
    return settings


def upload(
    api, content: bytes, filename="INV-1001.pdf", content_type="application/pdf", identity=None
) -> str:
    kwargs = {"identity": identity} if identity else {}
    status, ticket, _ = api.call(
        "POST",
        "/documents/uploads",
        {"filename": filename, "content_type": content_type, "size": len(content)},
        **kwargs,
    )
    assert status == 201, ticket
    assert ticket["method"] == "PUT"
    response = requests.put(ticket["url"], data=content, headers=ticket["headers"], timeout=10)
    assert response.status_code == 200
    return ticket["upload_id"]


def email(api, upload_id=None, **changes):
    body = {"document": INVOICE, "to": ["dana@customer.example"]} | changes
    if upload_id:
        body["attachments"] = [{"upload_id": upload_id}]
    return api.call("POST", "/documents/email", body)


def sent_log(aws) -> list:
    return aws.client("dynamodb").scan(TableName="local-SentLogTable")["Items"]


def test_invoice_arrives_with_its_pdf_byte_for_byte_and_the_edited_subject(api, company, mail_server):
    upload_id = upload(api, PDF)

    status, entry, _ = email(
        api, upload_id, subject="Your invoice INV-1001 (corrected)", bcc=["files@acme.example"]
    )

    assert status == 200, entry
    assert entry["status"] == "sent" and entry["kind"] == "document" and entry["from"] == ACCOUNT
    [received] = mail_server.messages
    message = received.parsed()
    assert message["Subject"] == "Your invoice INV-1001 (corrected)"
    assert message["From"] == "Acme Plumbing <billing@acme.example>"
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "INV-1001.pdf" and attachment.get_content() == PDF
    assert set(received.rcpt_tos) == {"dana@customer.example", "files@acme.example", "archive@acme.example"}
    assert "Bcc" not in message and b"archive@acme.example" not in received.data
    assert entry["attachments"] == [{"filename": "INV-1001.pdf", "size": len(PDF)}]
    assert entry["message_id"] == message["Message-ID"]


def test_default_wording_fills_the_document_merge_fields(api, company, mail_server):
    status, _entry, _ = email(api, upload(api, PDF))

    assert status == 200
    message = mail_server.messages[0].parsed()
    assert message["Subject"] == "Invoice INV-1001 from Acme Plumbing"
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "Dear Dana Whitfield" in html and "$1,250.00" in html and "December 1, 2026" in html
    assert "Dear Dana Whitfield" in text and "<p>" not in text


def test_company_wording_is_used_once_saved(api, company, mail_server):
    template = {"subject": "[51] for [52]", "body_html": "<p>Hello {{ document.customer_name }}</p>"}
    status, saved, _ = api.call("PUT", "/document-templates/invoice", template)
    assert status == 200 and saved["is_default"] is False

    email(api, upload(api, PDF))

    message = mail_server.messages[0].parsed()
    assert message["Subject"] == "INV-1001 for Dana Whitfield"
    assert "Hello Dana Whitfield" in message.get_body(("html",)).get_content()


@pytest.mark.parametrize(
    ("wording", "field", "words"),
    [
        ({"subject": "{{ document.numbr }}", "body_html": "<p>x</p>"}, "subject", "document.numbr"),
        ({"subject": "ok", "body_html": "<p>\n{% if %}</p>"}, "body_html", "line 2"),
        ({"subject": "ok [999]", "body_html": "<p>x</p>"}, "subject", "[999] at line 1, column 4"),
        ({"subject": "ok", "body_html": "{{ work_order.number }}"}, "body_html", "work_order.number"),
    ],
)
def test_broken_document_template_is_refused_naming_field_and_place(api, wording, field, words):
    status, body, _ = api.call("PUT", "/document-templates/invoice", wording)

    assert status == 422
    assert body["errors"][0]["field"] == field and words in body["errors"][0]["message"]
    assert api.call("GET", "/document-templates/invoice")[1]["is_default"] is True


def test_only_admins_change_document_wording(api):
    status, _, _ = api.call(
        "PUT", "/document-templates/invoice", {"subject": "x", "body_html": "y"}, identity=USER
    )

    assert status == 403


def test_every_document_type_has_a_default_template(api):
    status, templates, _ = api.call("GET", "/document-templates")

    assert status == 200
    assert [t["type"] for t in templates] == [
        "invoice",
        "estimate",
        "sales_order",
        "purchase_order",
        "statement",
        "receipt",
        "packing_slip",
    ]
    assert all(t["is_default"] for t in templates)


def test_sender_auto_prefers_the_users_own_settings(api, company, mail_server):
    mine = company | {"from_name": "Tech One", "from_email": ACCOUNT, "bcc": None}
    del mine["timezone"]
    assert api.call("PUT", "/settings/me", mine, identity=USER)[0] == 200

    api.call(
        "POST", "/documents/email", {"document": INVOICE, "to": ["dana@customer.example"]}, identity=USER
    )
    api.call(
        "POST",
        "/documents/email",
        {"document": INVOICE, "to": ["dana@customer.example"], "sender": "company"},
        identity=USER,
    )

    froms = [m.parsed()["From"] for m in mail_server.messages]
    assert froms == ["Tech One <billing@acme.example>", "Acme Plumbing <billing@acme.example>"]
    assert "archive@acme.example" in mail_server.messages[0].rcpt_tos  # the company BCC applies to both


def test_sending_as_me_without_own_settings_is_409(api, company, mail_server):
    status, body, _ = email(api, sender="me")

    assert status == 409 and "/settings/me" in body["detail"]
    assert mail_server.messages == []


def test_no_company_settings_is_409(api, trust_local_ca):
    status, body, _ = email(api)

    assert status == 409 and "/settings/company" in body["detail"]


def test_sent_log_lists_a_document_newest_first_with_a_cursor(api, company, mail_server, aws):
    upload_id = upload(api, PDF)
    ids = [email(api, upload_id, subject=f"Try {n}")[1]["id"] for n in range(3)]
    email(api, upload_id, document=INVOICE | {"number": "INV-2000"})

    status, first, _ = api.call(
        "GET", "/emails", query={"document_type": "invoice", "document_number": "INV-1001", "limit": "2"}
    )
    assert status == 200 and [e["id"] for e in first["items"]] == ids[::-1][:2]
    status, second, _ = api.call(
        "GET",
        "/emails",
        query={
            "document_type": "invoice",
            "document_number": "INV-1001",
            "limit": "2",
            "cursor": first["next_cursor"],
        },
    )
    assert [e["id"] for e in second["items"]] == ids[:1]
    assert (
        second["next_cursor"] is None
        or api.call(
            "GET",
            "/emails",
            query={
                "document_type": "invoice",
                "document_number": "INV-1001",
                "cursor": second["next_cursor"],
            },
        )[1]["items"]
        == []
    )


def test_sent_log_by_work_order_and_by_id(api, company, mail_server):
    _, entry, _ = email(api, work_order_id="WO-77")
    email(api, work_order_id="WO-78")

    _, page, _ = api.call("GET", "/emails", query={"work_order_id": "WO-77"})
    assert [e["id"] for e in page["items"]] == [entry["id"]]
    status, one, _ = api.call("GET", f"/emails/{entry['id']}")
    assert status == 200 and one == entry


def test_another_tenant_cannot_read_or_resend_an_entry(api, company, mail_server):
    _, entry, _ = email(api)
    other = Identity(tenant_id="other-co", user_id="u9", email="u9@other.example")

    assert api.call("GET", f"/emails/{entry['id']}", identity=other)[0] == 404
    assert api.call("POST", f"/emails/{entry['id']}/resend", identity=other)[0] == 404
    assert api.call("GET", "/emails", identity=other)[1]["items"] == []


def test_tampered_cursor_is_422_naming_cursor(api, company, mail_server):
    for cursor in ("not-a-cursor", "eyJwayI6IlRFTkFOVCNvdGhlciJ9"):  # the second: {"pk":"TENANT#other"}
        status, body, _ = api.call("GET", "/emails", query={"cursor": cursor})
        assert status == 422 and body["errors"][0]["field"] == "cursor"


def test_resend_delivers_again_as_a_new_entry(api, company, mail_server):
    _, first, _ = email(api, upload(api, PDF), subject="Invoice INV-1001 (copy)")

    status, again, _ = api.call("POST", f"/emails/{first['id']}/resend")

    assert status == 200 and again["id"] != first["id"] and again["resent_from"] == first["id"]
    assert [m.parsed()["Subject"] for m in mail_server.messages] == ["Invoice INV-1001 (copy)"] * 2
    assert next(iter(mail_server.messages[1].parsed().iter_attachments())).get_content() == PDF


def test_resend_after_the_attachment_expired_is_410(api, company, mail_server, aws):
    _, first, _ = email(api, upload(api, PDF))
    bucket = "local-attachmentsbucket"
    for item in aws.client("s3").list_objects_v2(Bucket=bucket)["Contents"]:
        aws.client("s3").delete_object(Bucket=bucket, Key=item["Key"])

    status, body, _ = api.call("POST", f"/emails/{first['id']}/resend")

    assert status == 410 and body["errors"][0]["field"] == "attachments[0].upload_id"
    assert "upload it again" in body["detail"]
    assert len(mail_server.messages) == 1


def test_refused_send_is_502_with_the_classified_failure_and_logged_failed(api, company, mail_server):
    status, body, headers = email(api, to=["nobody@refused.example"])

    assert status == 502 and headers["content-type"] == "application/problem+json"
    assert body["category"] == "recipient_rejected" and body["smtp_code"] == 550
    assert "nobody@refused.example" in body["hint"]
    _, logged, _ = api.call("GET", f"/emails/{body['email_id']}")
    assert logged["status"] == "failed" and logged["error"]["category"] == "recipient_rejected"


def test_wrong_password_is_502_auth_failed(api, company, mail_server):
    api.call("PUT", "/settings/company", company | {"password": "stale"})

    status, body, _ = email(api)

    assert status == 502 and body["category"] == "auth_failed" and "app password" in body["hint"]


def test_attachments_over_the_limit_are_413_before_anything_is_sent(api, company, mail_server, monkeypatch):
    monkeypatch.setenv("ATTACHMENT_MAX_BYTES", "2000000")
    upload_id = upload(api, PDF)
    big = upload(api, pdf_file(b"0" * 1_999_000), filename="big.pdf")

    status, body, _ = email(api, attachments=[{"upload_id": upload_id}, {"upload_id": big}])
    declared = api.call(
        "POST",
        "/documents/uploads",
        {"filename": "huge.pdf", "content_type": "application/pdf", "size": 2_000_001},
    )

    assert status == 413 and body["errors"][0]["field"] == "attachments"
    assert declared[0] == 413
    assert mail_server.messages == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"document": INVOICE | {"type": "quote"}}, "document.type"),
        ({"to": []}, "to"),
        ({"to": ["not-an-address"]}, "to[0]"),
        ({"cc": ["ok@x.example", "bad@@x.example"]}, "cc[1]"),
        ({"to": [f"r{n}@x.example" for n in range(51)]}, "to"),
        ({"to": [f"r{n}@x.example" for n in range(30)], "cc": [f"c{n}@x.example" for n in range(21)]}, "to"),
        ({"subject": "Invoice\r\nBcc: victim@x.example"}, "subject"),
        ({"document": INVOICE | {"customer_name": "Dana\nBcc: v@x.example"}}, "document.customer_name"),
        ({"document": INVOICE | {"amount": "12,50"}}, "document.amount"),
        ({"sender": "boss"}, "sender"),
        ({"attachments": [{"upload_id": "../../etc/passwd"}]}, "attachments[0].upload_id"),
    ],
)
def test_bad_request_names_the_field_and_sends_nothing(api, company, mail_server, aws, change, field):
    status, body, _ = email(api, **change)

    assert status == 422, body
    assert field in [e["field"] for e in body["errors"]]
    assert mail_server.messages == [] and sent_log(aws) == []


def test_upload_of_another_tenant_is_404(api, company, mail_server, aws):
    other = Identity(tenant_id="other-co", user_id="u9", email="u9@other.example")
    foreign = upload(api, PDF, identity=other)

    status, body, _ = email(api, foreign)

    assert status == 404 and body["errors"][0]["field"] == "attachments[0].upload_id"
    assert mail_server.messages == [] and sent_log(aws) == []


def test_a_file_declared_pdf_that_is_not_a_pdf_is_422(api, company, mail_server, aws):
    fake = upload(api, b"MZ\x90\x00 this is an executable", filename="invoice.pdf")

    status, body, _ = email(api, fake)

    assert status == 422 and "not a real application/pdf" in body["errors"][0]["message"]
    assert mail_server.messages == [] and sent_log(aws) == []


def test_zero_byte_upload_is_refused(api, company, mail_server):
    status, body, _ = api.call(
        "POST", "/documents/uploads", {"filename": "empty.pdf", "content_type": "application/pdf", "size": 0}
    )

    assert status == 422 and body["errors"][0]["field"] == "size"


@pytest.mark.parametrize("filename", ["../secret.pdf", "a/b.pdf", "inv\r\n.pdf", ".hidden.pdf"])
def test_upload_filename_must_be_plain(api, filename):
    status, body, _ = api.call(
        "POST", "/documents/uploads", {"filename": filename, "content_type": "application/pdf", "size": 10}
    )

    assert status == 422 and body["errors"][0]["field"] == "filename"


def test_preview_shows_what_would_be_sent(api, company):
    status, body, _ = api.call("POST", "/documents/preview", {"document": INVOICE | {"type": "estimate"}})

    assert status == 200
    assert body["subject"] == "Estimate INV-1001 from Acme Plumbing"
    assert "$1,250.00" in body["html"] and "$1,250.00" in body["text"]


def test_listing_by_document_needs_both_type_and_number(api):
    status, body, _ = api.call("GET", "/emails", query={"document_type": "invoice"})

    assert status == 422 and body["errors"][0]["field"] == "document_number"
