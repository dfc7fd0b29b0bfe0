"""Upload tricks against document email, through the handlers: moto S3 behind the presigned address, real
SMTP on loopback. Each trick is refused, and nothing is sent.

- a file larger than the size declared for it (or than the limit) put to the presigned address;
- a file name whose extension is not its type (`invoice.pdf.exe` as application/pdf);
- invisible, control and text-direction characters in the name (`invoice\u202efdp.exe`);
- a "PDF" that is `%PDF-` followed by HTML, or that has no end;
- the file replaced after the send, so that a resend would attach the replacement.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from local.smtp_server import RecordingHandler
from tests.support.factories import TIMEZONE, pdf_file, smtp_settings

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "billing@acme.example"
INVOICE = {"type": "invoice", "number": "INV-1001", "customer_name": "Dana Whitfield"}
PDF = pdf_file(b"BT /F1 12 Tf 72 712 Td (Invoice INV-1001) Tj ET")
LIMIT = 64 * 1024  # ATTACHMENT_MAX_BYTES in these tests, so that an over-limit file stays small


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=RecordingHandler())


@pytest.fixture
def company(api, trust_local_ca, mail_server, monkeypatch):
    monkeypatch.setenv("ATTACHMENT_MAX_BYTES", str(LIMIT))
    settings = smtp_settings(ACCOUNT, PASSWORD, port=mail_server.port, timezone=TIMEZONE)
    assert api.call("PUT", "/settings/company", settings)[0] == 200


@pytest.fixture
def bucket(template) -> str:
    return template.names.ref("AttachmentsBucket")


def ask_upload(api, filename: str, content_type: str, size: int) -> tuple[int, Any]:
    status, body, _ = api.call(
        "POST", "/documents/uploads", {"filename": filename, "content_type": content_type, "size": size}
    )
    return status, body


def put(ticket: dict[str, Any], content: bytes) -> None:
    """The browser's PUT to the presigned address, with the headers the ticket names (requests sends the
    real Content-Length of `content`; moto, unlike S3, does not check the signature)."""
    response = requests.put(ticket["url"], data=content, headers=ticket["headers"], timeout=10)
    assert response.status_code == 200, response.text


def upload(api, content: bytes, filename="INV-1001.pdf", content_type="application/pdf", declared=None):
    status, ticket = ask_upload(api, filename, content_type, len(content) if declared is None else declared)
    assert status == 201, ticket
    put(ticket, content)
    return ticket


def email(api, *upload_ids: str):
    body = {
        "document": INVOICE,
        "to": ["dana@customer.example"],
        "attachments": [{"upload_id": upload_id} for upload_id in upload_ids],
    }
    return api.call("POST", "/documents/email", body)


def sent_log(aws) -> list[Any]:
    return aws.client("dynamodb").scan(TableName="local-SentLogTable")["Items"]


def stored_versions(aws, bucket: str, upload_id: str) -> list[Any]:
    listed = aws.client("s3").list_object_versions(Bucket=bucket)
    return [v for v in listed.get("Versions", []) if f"/{upload_id}/" in v["Key"]]


def attachment_of(received) -> bytes:
    [attachment] = list(received.parsed().iter_attachments())
    return attachment.get_content()


# --- 1. the declared size is the size ---------------------------------------------------------------------


def test_the_upload_address_is_signed_for_the_declared_length_and_type(api, company):
    status, ticket = ask_upload(api, "INV-1001.pdf", "application/pdf", 48213)

    assert status == 201
    assert set(ticket) == {"upload_id", "url", "method", "headers", "expires_at", "max_size"}
    assert ticket["method"] == "PUT"
    assert ticket["headers"]["Content-Type"] == "application/pdf"
    assert ticket["headers"]["Content-Length"] == "48213"
    query = parse_qs(urlsplit(ticket["url"]).query)
    signed = query["X-Amz-SignedHeaders"][0].split(";")
    assert {"content-length", "content-type", "host"} <= set(signed)
    # every header the client must send is one the signature covers
    assert {name.lower() for name in ticket["headers"]} <= set(signed)


@pytest.mark.parametrize(
    ("declared", "content"),
    [
        (len(PDF), pdf_file(b"0" * (LIMIT + 1))),  # over the declared size and over the limit
        (len(PDF), pdf_file(b"0" * 4096)),  # over the declared size, within the limit
        (len(pdf_file(b"0" * 4096)), PDF),  # under the declared size
    ],
    ids=["over-the-limit", "over-declared", "under-declared"],
)
def test_a_file_of_another_size_than_declared_is_refused_at_send_and_deleted(
    api, company, mail_server, aws, bucket, declared, content
):
    ticket = upload(api, content, declared=declared)

    status, body, _ = email(api, ticket["upload_id"])

    assert status == 413, body
    assert body["errors"][0]["field"] == "attachments[0].upload_id"
    assert mail_server.messages == [] and sent_log(aws) == []
    assert stored_versions(aws, bucket, ticket["upload_id"]) == []


def test_a_good_upload_next_to_a_refused_one_is_kept(api, company, mail_server, aws, bucket):
    good = upload(api, PDF)
    bad = upload(api, pdf_file(b"0" * 4096), filename="big.pdf", declared=len(PDF))

    status, body, _ = email(api, good["upload_id"], bad["upload_id"])

    assert status == 413 and body["errors"][0]["field"] == "attachments[1].upload_id"
    assert len(stored_versions(aws, bucket, good["upload_id"])) == 1
    assert email(api, good["upload_id"])[0] == 200


# --- 2. the name ends as its type -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("invoice.pdf.exe", "application/pdf"),
        ("invoice.exe", "application/pdf"),
        ("invoice", "application/pdf"),
        ("invoice.pdf.", "application/pdf"),
        ("invoice.html", "application/pdf"),
        ("photo.png", "image/jpeg"),
        ("photo.jpg", "image/png"),
        ("photo.svg", "image/png"),
        ("report.csv.js", "text/csv"),
        ("notes.html", "text/plain"),
        ("notes.txt", "text/csv"),
    ],
)
def test_a_file_name_that_does_not_end_as_its_type_is_422(api, filename, content_type):
    status, body = ask_upload(api, filename, content_type, 100)

    assert status == 422, body
    assert [e["field"] for e in body["errors"]] == ["filename"]


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("INV-1001.pdf", "application/pdf"),
        ("Scan 2026-11-02.PDF", "application/pdf"),
        ("logo.png", "image/png"),
        ("luis.jpg", "image/jpeg"),
        ("luis.jpeg", "image/jpeg"),
        ("hours.csv", "text/csv"),
        ("notes.txt", "text/plain"),
        ("Facture n° 12 – été.pdf", "application/pdf"),
    ],
)
def test_names_that_end_as_their_type_are_accepted(api, filename, content_type):
    status, ticket = ask_upload(api, filename, content_type, 100)

    assert status == 201, ticket


# --- 3. no invisible, control or direction characters in the name ---------------------------------------


@pytest.mark.parametrize(
    "filename",
    [
        "invoice\u202efdp.exe.pdf",  # right-to-left override: shows as "invoicefdp.exe..." reversed
        "invoice\u202e.pdf",
        "INV\u200b-1001.pdf",  # zero-width space
        "INV\u200c-1001.pdf",
        "INV\u200d-1001.pdf",
        "INV\u200e-1001.pdf",  # left-to-right mark
        "INV\u200f-1001.pdf",  # right-to-left mark
        "INV\u2060-1001.pdf",  # word joiner
        "\ufeffINV-1001.pdf",  # byte order mark
        "INV\u202a-1001.pdf",
        "INV\u202b-1001.pdf",
        "INV\u202c-1001.pdf",
        "INV\u202d-1001.pdf",
        "INV\u2066-1001.pdf",  # isolates
        "INV\u2067-1001.pdf",
        "INV\u2068-1001.pdf",
        "INV\u2069-1001.pdf",
        "INV\x85-1001.pdf",  # C1 control characters
        "INV\x9b-1001.pdf",
        "INV\x7f-1001.pdf",
        "INV\x00-1001.pdf",
        "INV\t1001.pdf",
    ],
)
def test_invisible_control_and_direction_characters_in_a_name_are_422(api, filename):
    status, body = ask_upload(api, filename, "application/pdf", 100)

    assert status == 422, body
    assert [e["field"] for e in body["errors"]] == ["filename"]


# --- 4. a PDF is a PDF, not a web page -------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"%PDF-1.4\n<html><body><script>location='https://evil.example'</script></body></html>\n%%EOF\n",
        b"%PDF-1.7\n<!DOCTYPE html><title>Invoice</title><p>Pay here</p>\n%%EOF\n",
        pdf_file(b"<SCRIPT>alert(1)</SCRIPT>"),
        pdf_file(b"<Html><Body onload=alert(1)>"),
        b"%PDF-1.4\n" + b"1 0 obj<</Type/Catalog>>endobj\n" * 20,  # no %%EOF at all
        pdf_file() + b"\n" + b"x" * 2048,  # %%EOF, but not within the last 1024 bytes
    ],
    ids=["script", "doctype", "script-in-stream", "mixed-case-html", "no-eof", "eof-too-early"],
)
def test_a_pdf_that_holds_html_or_has_no_end_is_422_naming_the_attachment(
    api, company, mail_server, aws, content
):
    ticket = upload(api, content)

    status, body, _ = email(api, ticket["upload_id"])

    assert status == 422, body
    assert body["errors"][0]["field"] == "attachments[0].upload_id"
    assert mail_server.messages == [] and sent_log(aws) == []


def test_a_well_formed_pdf_with_binary_content_is_sent_byte_for_byte(api, company, mail_server):
    pdf = pdf_file(bytes(range(256)) * 8)
    ticket = upload(api, pdf)

    status, entry, _ = email(api, ticket["upload_id"])

    assert status == 200, entry
    assert attachment_of(mail_server.messages[0]) == pdf
    assert entry["attachments"] == [{"filename": "INV-1001.pdf", "size": len(pdf)}]


# --- 5. a resend attaches what was sent ------------------------------------------------------------------


ORIGINAL = pdf_file(b"(Amount due: 1,250.00 to ACME BANK 0001)")
REPLACEMENT = pdf_file(b"(Amount due: 1,250.00 to EVIL BANK 6666)")


def test_a_file_replaced_after_the_send_is_not_what_a_resend_attaches(api, company, mail_server):
    assert len(ORIGINAL) == len(REPLACEMENT)  # the same size: the signed length does not stop it
    ticket = upload(api, ORIGINAL)
    status, first, _ = email(api, ticket["upload_id"])
    assert status == 200, first

    put(ticket, REPLACEMENT)  # the presigned address is still valid
    status, again, _ = api.call("POST", f"/emails/{first['id']}/resend")

    assert status == 200, again
    assert again["resent_from"] == first["id"]
    assert [attachment_of(m) for m in mail_server.messages] == [ORIGINAL, ORIGINAL]
    # a resend of the resend pins the same file
    status, third, _ = api.call("POST", f"/emails/{again['id']}/resend")
    assert status == 200 and third["resent_from"] == again["id"]
    assert attachment_of(mail_server.messages[2]) == ORIGINAL


def test_without_versions_a_file_changed_after_the_send_makes_the_resend_409(
    api, company, mail_server, aws, bucket
):
    aws.client("s3").put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    ticket = upload(api, ORIGINAL)
    _, first, _ = email(api, ticket["upload_id"])

    put(ticket, REPLACEMENT)
    status, body, _ = api.call("POST", f"/emails/{first['id']}/resend")

    assert status == 409, body
    assert body["errors"][0]["field"] == "attachments[0].upload_id"
    assert "changed" in body["detail"]
    assert [attachment_of(m) for m in mail_server.messages] == [ORIGINAL]


def test_an_unchanged_file_is_resent_without_versions_too(api, company, mail_server, aws, bucket):
    aws.client("s3").put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"})
    ticket = upload(api, ORIGINAL)
    _, first, _ = email(api, ticket["upload_id"])

    status, again, _ = api.call("POST", f"/emails/{first['id']}/resend")

    assert status == 200, again
    assert [attachment_of(m) for m in mail_server.messages] == [ORIGINAL, ORIGINAL]


def test_the_attachments_bucket_keeps_versions_and_expires_the_old_ones(template, aws, bucket):
    props = template.resources["AttachmentsBucket"]["Properties"]
    [rule] = [r for r in props["LifecycleConfiguration"]["Rules"] if "ExpirationInDays" in r]
    policies = {
        logical: [
            action
            for policy in template.functions()[logical]["Properties"]["Policies"]
            for statement in (policy.get("Statement") or [])
            for action in statement["Action"]
        ]
        for logical in ("DocumentEmailFunction", "EmailWorkerFunction")
    }

    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": {"Ref": "AttachmentRetentionDays"}}
    assert all("s3:GetObjectVersion" in actions for actions in policies.values()), policies
    assert aws.client("s3").get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_an_entry_sent_before_versions_were_kept_is_still_resent(api, company, mail_server, aws):
    ticket = upload(api, ORIGINAL)
    _, first, _ = email(api, ticket["upload_id"])
    table = aws.resource("dynamodb").Table("local-SentLogTable")
    [item] = table.scan()["Items"]
    assert len(item["request"].pop("attachment_versions")) == 1  # as the sent log held it until now
    table.put_item(Item=item)

    status, again, _ = api.call("POST", f"/emails/{first['id']}/resend")

    assert status == 200, again
    assert [attachment_of(m) for m in mail_server.messages] == [ORIGINAL, ORIGINAL]
