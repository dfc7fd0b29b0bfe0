"""Document events through the API, the outbox queue and the worker, with real SMTP servers on
loopback: the six events' confirmations, the packing slip attached byte for byte, who sends them,
when nothing is queued, bad input refused before anything is queued, and each raise sent once."""

from __future__ import annotations

from typing import Any

import pytest

from local.events import USER, FakeContext, Identity
from tests.support.factories import TIMEZONE, pdf_file, smtp_settings
from tests.support.steps import activate_document_event, raise_event, save_settings, upload_pdf

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "billing@acme.example"
TECH_ACCOUNT = "tech@acme.example"
TECH_PASSWORD = "Tech-Horse-Battery-9"
CUSTOMER = "dana@customer.example"
EVENTS = (
    "sales_order.allocated",
    "order.released",
    "shipment.shipped",
    "bill.paid",
    "goods.received",
    "invoice.created",
)
SALES_ORDER = {"type": "sales_order", "number": "SO-1001", "customer_name": "Dana Whitfield"}
PACKING_SLIP = {"type": "packing_slip", "number": "SO-1001", "customer_name": "Dana Whitfield"}
BILL = {
    "type": "purchase_order",
    "number": "BILL-2001",
    "customer_name": "Northside Supply",
    "amount": "840.00",
    "currency": "USD",
}
PURCHASE_ORDER = {"type": "purchase_order", "number": "PO-2001", "customer_name": "Northside Supply"}
INVOICE = {
    "type": "invoice",
    "number": "INV-1001",
    "customer_name": "Dana Whitfield",
    "amount": "1250.00",
    "currency": "USD",
    "due_date": "2026-12-01",
}
# event: (the document raised with it, the default subject it arrives with, words of its body)
DEFAULT_MAIL = {
    "sales_order.allocated": (SALES_ORDER, "Your order SO-1001 is being prepared", "set aside for you"),
    "order.released": (SALES_ORDER, "Your order SO-1001 has been released", "released for fulfillment"),
    "shipment.shipped": (PACKING_SLIP, "Your order SO-1001 has shipped", "The packing slip is attached"),
    "bill.paid": (BILL, "Payment sent for BILL-2001", "We have paid BILL-2001 for $840.00"),
    "goods.received": (PURCHASE_ORDER, "Goods received for PO-2001", "goods for purchase order PO-2001"),
    "invoice.created": (
        INVOICE,
        "Invoice INV-1001 from Acme Plumbing",
        "invoice INV-1001 for $1,250.00, due December 1, 2026",
    ),
}
SLIP = pdf_file(bytes(range(256)) * 4)  # every byte value, in the page's content stream
OTHER_TENANT = Identity(tenant_id="other-co", user_id="admin-2", email="admin@other.example")
USER_WITHOUT_SETTINGS = Identity(user_id="user-2", email="clerk@demo.test", groups=())


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


@pytest.fixture
def company(api, trust_local_ca, mail_server) -> dict[str, Any]:
    return save_settings(api, smtp_settings(ACCOUNT, PASSWORD, port=mail_server.port, timezone=TIMEZONE))


def received(server) -> list[Any]:
    return [m.parsed() for m in server.messages]


def html_of(message) -> str:
    return message.get_body(("html",)).get_content()


# --- the wording -----------------------------------------------------------------------------------


def test_every_event_has_an_inactive_default_before_anything_is_saved(api):
    status, automations, _ = api.call("GET", "/document-automations")

    assert status == 200
    assert [a["event"] for a in automations] == list(EVENTS)
    assert all(a["is_default"] and not a["active"] and a["sender"] == "company" for a in automations)
    shipped = next(a for a in automations if a["event"] == "shipment.shipped")
    assert shipped["subject"] == "Your order {{ document.number }} has shipped"
    assert shipped["attach_document"] is True


def test_what_is_saved_is_what_get_and_the_list_show_and_read_only_fields_are_ignored(api):
    _, current, _ = api.call("GET", "/document-automations/bill.paid")
    changed = current | {"active": True, "subject": "Paid: [51]", "sender": "caller"}  # as read, changed

    status, saved, _ = api.call("PUT", "/document-automations/bill.paid", changed)

    assert status == 200, saved
    assert (saved["is_default"], saved["updated_by"]) == (False, "admin@demo.test")
    assert api.call("GET", "/document-automations/bill.paid")[1] == saved
    listed = {a["event"]: a for a in api.call("GET", "/document-automations")[1]}
    assert (listed["bill.paid"]["subject"], listed["bill.paid"]["sender"]) == ("Paid: [51]", "caller")
    assert listed["shipment.shipped"]["is_default"] is True


@pytest.mark.parametrize(
    ("wording", "field", "words"),
    [
        ({"subject": "{{ document.numbr }}", "body_html": "<p>x</p>"}, "subject", "document.numbr"),
        ({"subject": "ok", "body_html": "<p>\n{% if %}</p>"}, "body_html", "line 2"),
        ({"subject": "ok [999]", "body_html": "<p>x</p>"}, "subject", "[999] at line 1, column 4"),
        ({"subject": "ok", "body_html": "{{ work_order.number }}"}, "body_html", "work_order.number"),
        (
            {"subject": "ok", "body_html": "<p>x</p>", "body_text": "{{ customer.name }}"},
            "body_text",
            "customer",
        ),
    ],
)
def test_a_broken_template_is_refused_at_save_naming_field_and_place(api, wording, field, words):
    status, problem, _ = api.call("PUT", "/document-automations/shipment.shipped", wording)

    assert status == 422, problem
    assert problem["errors"][0]["field"] == field and words in problem["errors"][0]["message"]
    assert api.call("GET", "/document-automations/shipment.shipped")[1]["is_default"] is True


def test_only_an_administrator_changes_the_wording(api):
    wording = {"active": True, "subject": "Shipped", "body_html": "<p>Shipped</p>"}

    status, problem, _ = api.call("PUT", "/document-automations/shipment.shipped", wording, identity=USER)

    assert status == 403, problem
    assert api.call("GET", "/document-automations/shipment.shipped")[1]["active"] is False


def test_an_event_in_the_body_other_than_the_paths_is_422_naming_event(api):
    wording = {"event": "bill.paid", "subject": "Shipped", "body_html": "<p>Shipped</p>"}

    status, problem, _ = api.call("PUT", "/document-automations/shipment.shipped", wording)

    assert status == 422 and problem["errors"][0]["field"] == "event", problem


def test_an_unknown_event_is_404_everywhere(api, company, outbox):
    wording = {"subject": "Hi", "body_html": "<p>Hi</p>"}
    answers = [
        api.call("GET", "/document-automations/shipment.lost"),
        api.call("PUT", "/document-automations/shipment.lost", wording),
        api.call("POST", "/document-automations/shipment.lost/preview", {"document": None}),
        api.call(
            "POST",
            "/documents/events",
            {"event": "shipment.lost", "document": PACKING_SLIP, "to": [CUSTOMER]},
        ),
    ]

    assert [status for status, _, _ in answers] == [404, 404, 404, 404], answers
    assert "shipment.shipped" in answers[0][1]["detail"]
    assert outbox.receive() == []


def test_the_preview_fills_in_the_document_given_or_the_events_sample(api, company):
    activate_document_event(
        api, "shipment.shipped", body_html="<p>[52]: {{ document.number }}, {{ company.name }}</p>"
    )

    status, given, _ = api.call(
        "POST",
        "/document-automations/shipment.shipped/preview",
        {"document": PACKING_SLIP | {"number": "SO-7"}},
    )
    sample = api.call("POST", "/document-automations/shipment.shipped/preview", {"document": None})[1]

    assert status == 200, given
    assert given["subject"] == "Your order SO-7 has shipped"
    assert given["html"] == "<p>Dana Whitfield: SO-7, Acme Plumbing</p>"
    assert given["text"].strip() == "Dana Whitfield: SO-7, Acme Plumbing"
    assert sample["subject"] == "Your order SO-1001 has shipped"


def test_the_preview_before_any_settings_are_saved_shows_the_sample_company_and_sender(api):
    status, sample, _ = api.call("POST", "/document-automations/invoice.created/preview", {"document": None})

    assert status == 200, sample
    assert sample["subject"] == "Invoice INV-1001 from Acme Plumbing"
    assert "Jamie Cole" in sample["html"] and "$120.00, due December 1, 2026" in sample["html"]


# --- raising events: what arrives --------------------------------------------------------------------


@pytest.mark.parametrize("event", EVENTS)
def test_each_events_confirmation_arrives_with_its_default_wording(api, company, mail_server, outbox, event):
    document, subject, words = DEFAULT_MAIL[event]
    activate_document_event(api, event)

    answer = raise_event(api, event, document, [CUSTOMER])
    assert mail_server.messages == []  # sent by the worker, not in the request
    assert outbox.drain() == []

    assert answer["queued"] is True and answer["email_id"]
    [message] = received(mail_server)
    assert (message["Subject"], message["To"]) == (subject, CUSTOMER)
    assert message["From"] == "Acme Plumbing <billing@acme.example>"
    assert message["Auto-Submitted"] == "auto-generated"
    html = html_of(message)
    assert words in html and "Hello " + document["customer_name"] in html and "Acme Plumbing" in html
    text = message.get_body(("plain",)).get_content()
    assert words in text and "<p>" not in text


def test_shipment_shipped_carries_the_packing_slip_byte_for_byte(api, company, mail_server, outbox):
    activate_document_event(api, "shipment.shipped")
    slip = upload_pdf(api, SLIP, "SO-1001-packing-slip.pdf")

    raise_event(api, "shipment.shipped", PACKING_SLIP, [CUSTOMER, "warehouse@customer.example"], [slip])
    assert outbox.drain() == []

    [received_message] = mail_server.messages
    message = received_message.parsed()
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == "SO-1001-packing-slip.pdf"
    assert attachment.get_content_type() == "application/pdf" and attachment.get_content() == SLIP
    assert set(received_message.rcpt_tos) == {CUSTOMER, "warehouse@customer.example"}


def test_with_attach_document_false_the_files_given_are_not_attached(api, company, mail_server, outbox):
    activate_document_event(api, "shipment.shipped", attach_document=False)
    slip = upload_pdf(api, SLIP, "SO-1001-packing-slip.pdf")

    raise_event(api, "shipment.shipped", PACKING_SLIP, [CUSTOMER], [slip])
    outbox.drain()

    [message] = received(mail_server)
    assert list(message.iter_attachments()) == []
    assert message["Subject"] == "Your order SO-1001 has shipped"


def test_the_sent_log_entry_is_under_the_email_id_the_raise_answered(api, company, mail_server, outbox):
    activate_document_event(api, "shipment.shipped")
    slip = upload_pdf(api, SLIP, "SO-1001-packing-slip.pdf")
    answer = raise_event(api, "shipment.shipped", PACKING_SLIP, [CUSTOMER], [slip])

    outbox.drain()

    status, entry, _ = api.call("GET", f"/emails/{answer['email_id']}")
    assert status == 200, entry
    assert (entry["id"], entry["kind"], entry["automation"], entry["status"]) == (
        answer["email_id"],
        "automation",
        "document_event",
        "sent",
    )
    assert entry["to"] == [CUSTOMER] and entry["from"] == ACCOUNT and entry["profile"] == "company"
    assert entry["document"] == PACKING_SLIP | {"amount": None, "currency": None, "due_date": None}
    assert entry["subject"] == "Your order SO-1001 has shipped"
    assert entry["attachments"] == [{"filename": "SO-1001-packing-slip.pdf", "size": len(SLIP)}]
    assert entry["message_id"] == received(mail_server)[0]["Message-ID"]
    _, page, _ = api.call(
        "GET", "/emails", query={"document_type": "packing_slip", "document_number": "SO-1001"}
    )
    assert [e["id"] for e in page["items"]] == [answer["email_id"]]


# --- who sends it ------------------------------------------------------------------------------------


@pytest.fixture
def tech_server(smtp_server):
    return smtp_server("starttls", users={TECH_ACCOUNT: TECH_PASSWORD})


@pytest.fixture
def own_settings(api, company, tech_server) -> dict[str, Any]:
    """USER's own account, on a server of its own."""
    mine = smtp_settings(TECH_ACCOUNT, TECH_PASSWORD, port=tech_server.port, from_name="Terry Tech")
    status, saved, _ = api.call("PUT", "/settings/me", mine, identity=USER)
    assert status == 200, saved
    return saved


def test_sender_caller_sends_from_the_callers_own_account(
    api, own_settings, mail_server, tech_server, outbox
):
    activate_document_event(api, "shipment.shipped", sender="caller")

    answer = raise_event(api, "shipment.shipped", PACKING_SLIP, [CUSTOMER], identity=USER)
    assert outbox.drain() == []

    assert mail_server.messages == []
    [own] = received(tech_server)
    assert own["From"] == "Terry Tech <tech@acme.example>"
    assert own["Subject"] == "Your order SO-1001 has shipped" and own["To"] == CUSTOMER
    assert "Terry Tech" in html_of(own)  # {{ sender.name }}
    _, entry, _ = api.call("GET", f"/emails/{answer['email_id']}")
    assert (entry["from"], entry["profile"]) == (TECH_ACCOUNT, "me")


def test_sender_caller_without_own_settings_sends_from_the_company_account(
    api, own_settings, mail_server, tech_server, outbox
):
    activate_document_event(api, "shipment.shipped", sender="caller")

    raise_event(api, "shipment.shipped", PACKING_SLIP, [CUSTOMER], identity=USER_WITHOUT_SETTINGS)
    assert outbox.drain() == []

    assert tech_server.messages == []
    [fallback] = received(mail_server)
    assert fallback["From"] == "Acme Plumbing <billing@acme.example>"
    assert "Acme Plumbing" in html_of(fallback)


def test_one_batch_with_a_callers_and_the_companys_event_sends_each_through_its_own_account(
    api, own_settings, mail_server, tech_server, outbox
):
    activate_document_event(api, "shipment.shipped", sender="caller")

    raise_event(api, "shipment.shipped", PACKING_SLIP, [CUSTOMER], identity=USER)
    raise_event(
        api,
        "shipment.shipped",
        PACKING_SLIP | {"number": "SO-1002"},
        [CUSTOMER],
        identity=USER_WITHOUT_SETTINGS,
    )
    assert outbox.drain() == []  # both in one batch

    assert [m["Subject"] for m in received(tech_server)] == ["Your order SO-1001 has shipped"]
    assert [m["Subject"] for m in received(mail_server)] == ["Your order SO-1002 has shipped"]


def test_sender_company_sends_from_the_company_account_whoever_raises_it(
    api, own_settings, mail_server, tech_server, outbox
):
    activate_document_event(api, "shipment.shipped")

    raise_event(api, "shipment.shipped", PACKING_SLIP, [CUSTOMER], identity=USER)
    outbox.drain()

    assert tech_server.messages == []
    assert [m["From"] for m in received(mail_server)] == ["Acme Plumbing <billing@acme.example>"]


# --- when nothing is queued --------------------------------------------------------------------------


def test_an_inactive_event_queues_nothing(api, company, mail_server, outbox):
    answer = raise_event(api, "shipment.shipped", PACKING_SLIP, [CUSTOMER])

    assert answer["queued"] is False and "inactive" in answer["reason"], answer
    assert answer["email_id"] is None
    assert outbox.receive() == [] and mail_server.messages == []


def test_an_event_without_a_recipient_queues_nothing(api, company, mail_server, outbox):
    activate_document_event(api, "shipment.shipped")

    answer = raise_event(api, "shipment.shipped", PACKING_SLIP, [])

    assert answer["queued"] is False and "no recipient" in answer["reason"], answer
    assert outbox.receive() == [] and mail_server.messages == []


def test_an_event_switched_off_after_the_raise_is_not_sent(api, company, mail_server, outbox):
    saved = activate_document_event(api, "shipment.shipped")
    assert raise_event(api, "shipment.shipped", PACKING_SLIP, [CUSTOMER])["queued"] is True

    status, _, _ = api.call("PUT", "/document-automations/shipment.shipped", saved | {"active": False})
    assert status == 200
    assert outbox.drain() == []

    assert mail_server.messages == []


# --- bad input: refused, nothing queued --------------------------------------------------------------


def test_another_companys_upload_is_422_naming_it_and_nothing_is_queued(api, company, mail_server, outbox):
    activate_document_event(api, "shipment.shipped")
    foreign = upload_pdf_as(api, OTHER_TENANT)

    body = {"event": "shipment.shipped", "document": PACKING_SLIP, "to": [CUSTOMER]}
    status, problem, _ = api.call(
        "POST", "/documents/events", body | {"attachments": [{"upload_id": foreign}]}
    )

    assert status == 422, problem
    assert [e["field"] for e in problem["errors"]] == ["attachments[0].upload_id"]
    assert outbox.receive() == [] and mail_server.messages == []


def upload_pdf_as(api, identity: Identity) -> str:
    request = {"filename": "slip.pdf", "content_type": "application/pdf", "size": len(SLIP)}
    status, ticket, _ = api.call("POST", "/documents/uploads", request, identity=identity)
    assert status == 201, ticket
    return str(ticket["upload_id"])


@pytest.mark.parametrize(
    ("to", "field"),
    [
        (["not an address"], "to[0]"),
        ([CUSTOMER, "dana@customer.example\r\nBcc: x@evil.example"], "to[1]"),
        ([f"r{n}@customer.example" for n in range(51)], "to"),
    ],
)
def test_bad_recipients_are_422_naming_them_and_nothing_is_queued(api, company, outbox, to, field):
    activate_document_event(api, "shipment.shipped")

    body = {"event": "shipment.shipped", "document": PACKING_SLIP, "to": to}
    status, problem, _ = api.call("POST", "/documents/events", body)

    assert status == 422, problem
    assert [e["field"] for e in problem["errors"]] == [field]
    assert outbox.receive() == []


def test_an_upload_deleted_after_the_raise_fails_the_email_for_good_naming_it(
    api, company, mail_server, outbox, aws, template
):
    activate_document_event(api, "shipment.shipped")
    slip = upload_pdf(api, SLIP, "SO-1001-packing-slip.pdf")
    answer = raise_event(api, "shipment.shipped", PACKING_SLIP, [CUSTOMER], [slip])
    bucket = template.names.ref("AttachmentsBucket")
    s3 = aws.client("s3")
    for item in s3.list_objects_v2(Bucket=bucket, Prefix=f"demo/{slip}/")["Contents"]:
        s3.delete_object(Bucket=bucket, Key=item["Key"])

    assert outbox.drain() == []  # a permanent failure: not delivered again

    assert mail_server.messages == []
    _, entry, _ = api.call("GET", f"/emails/{answer['email_id']}")
    assert entry["status"] == "failed" and entry["automation"] == "document_event"
    assert (entry["error"]["stage"], entry["error"]["category"]) == ("attachments", "attachment_unusable")
    assert slip in entry["error"]["hint"] and "raise the event again" in entry["error"]["hint"]


# --- once ----------------------------------------------------------------------------------------------


def test_a_redelivered_event_is_sent_once(api, company, mail_server, outbox):
    activate_document_event(api, "shipment.shipped")
    raise_event(api, "shipment.shipped", PACKING_SLIP, [CUSTOMER])

    [message] = outbox.receive()
    for _ in range(3):  # SQS delivers at least once: the same record again
        assert outbox.worker.lambda_handler(outbox.event([message]), FakeContext())["batchItemFailures"] == []

    assert len(mail_server.messages) == 1
    _, page, _ = api.call("GET", "/emails")
    assert len(page["items"]) == 1


def test_a_raise_retried_with_the_same_idempotency_key_queues_once(api, company, mail_server, outbox):
    activate_document_event(api, "shipment.shipped")
    body = {"event": "shipment.shipped", "document": PACKING_SLIP, "to": [CUSTOMER]}
    key = {"Idempotency-Key": "shipment-SO-1001"}

    first = api.call("POST", "/documents/events", body, headers=key)
    again = api.call("POST", "/documents/events", body, headers=key)
    assert outbox.drain() == []

    assert first[0] == again[0] == 200 and first[1]["queued"] is True
    assert again[1] == first[1] and again[2].get("idempotent-replayed") == "true"
    assert len(mail_server.messages) == 1
    assert api.call("GET", f"/emails/{first[1]['email_id']}")[0] == 200


def test_two_raises_without_a_key_are_two_emails(api, company, mail_server, outbox):
    activate_document_event(api, "shipment.shipped")

    first = raise_event(api, "shipment.shipped", PACKING_SLIP, [CUSTOMER])
    second = raise_event(api, "shipment.shipped", PACKING_SLIP, [CUSTOMER])
    outbox.drain()

    assert first["email_id"] != second["email_id"]
    assert len(mail_server.messages) == 2
