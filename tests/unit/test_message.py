"""MIME building, read back as a recipient's client would: every test runs on both builders, the lean
path (`build_message`) and the email package's own (`build_message_stdlib`)."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from mailer.delivery.message import Attachment, InlineImage, Sender, build_message, build_message_stdlib
from mailer.errors import InvalidInput

SENDER = Sender("billing@acme.example", "Acme Billing", reply_to="office@acme.example")


@pytest.fixture(params=[build_message, build_message_stdlib], ids=["lean", "stdlib"])
def build(request):
    return request.param


def parse(out):
    """Read the wire bytes as a mail store does: CRLF line ends become the local newline."""
    return message_from_bytes(out.as_bytes().replace(b"\r\n", b"\n"), policy=policy.default)


def test_bcc_is_in_the_envelope_only(build):
    out = build(
        sender=SENDER,
        to=["a@x.example"],
        cc=["c@x.example"],
        bcc=["archive@acme.example"],
        subject="Hi",
        text="t",
    )

    parsed = parse(out)
    assert out.recipients == ("a@x.example", "c@x.example", "archive@acme.example")
    assert "Bcc" not in parsed and b"archive@acme.example" not in out.as_bytes()
    assert parsed["Cc"] == "c@x.example"


def test_text_and_html_alternatives_round_trip(build):
    out = build(sender=SENDER, to=["a@x.example"], subject="Invoice", text="Plain ✓", html="<p>Rich ✓</p>")

    parsed = parse(out)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed.get_body(("plain",)).get_content() == "Plain ✓\n"
    assert parsed.get_body(("html",)).get_content() == "<p>Rich ✓</p>\n"
    assert all(b < 128 for b in out.as_bytes()), "7-bit clean, so no server needs 8BITMIME"


def test_non_ascii_display_name_and_subject_are_encoded_and_decoded(build):
    sender = Sender("billing@acme.example", "Müller & Søn, Heizung")
    out = build(sender=sender, to=["a@x.example"], subject="Rechnung Nr. 5 – fällig", text="x")

    parsed = parse(out)
    assert b"=?utf-8?" in out.as_bytes()
    assert parsed["From"].addresses[0].display_name == "Müller & Søn, Heizung"
    assert parsed["Subject"] == "Rechnung Nr. 5 – fällig"


def test_attachment_is_carried_byte_for_byte(build):
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 40
    out = build(
        sender=SENDER,
        to=["a@x.example"],
        subject="Invoice",
        text="x",
        attachments=[Attachment("INV-1.pdf", pdf)],
    )

    [attachment] = list(parse(out).iter_attachments())
    assert attachment.get_filename() == "INV-1.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == pdf


def test_inline_image_is_related_to_the_html_by_content_id(build):
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 64
    out = build(
        sender=SENDER,
        to=["a@x.example"],
        subject="On the way",
        text="x",
        html='<img src="cid:tech-photo">',
        inline_images=[InlineImage("tech-photo", jpeg, "image/jpeg", "tech.jpg")],
    )

    related = parse(out).get_body(("related",))
    assert related.get_content_type() == "multipart/related"
    image = next(p for p in related.iter_parts() if p.get_content_maintype() == "image")
    assert image["Content-ID"] == "<tech-photo>" and image.get_content() == jpeg


def test_message_id_is_on_the_sender_domain_and_automated_mail_is_marked(build):
    out = build(sender=SENDER, to=["a@x.example"], subject="Reminder", text="x", automated=True)

    parsed = parse(out)
    assert parsed["Message-ID"].endswith("@acme.example>") and out.message_id == parsed["Message-ID"]
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Reply-To"] == "office@acme.example" and parsed["Date"]


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("subject", {"subject": "Hi\r\nBcc: victim@x.example"}),
        ("to", {"to": ["a@x.example\nBcc: v@x.example"]}),
        ("from_name", {"sender": Sender("billing@acme.example", "Acme\rX-Evil: 1")}),
        ("subject", {"subject": "Hi\u2028Bcc: victim@x.example"}),
        ("from_name", {"sender": Sender("billing@acme.example", " \x1f\x80")}),  # folds into a raw =?utf-8?
        ("filename", {"attachments": [Attachment("a\nb.pdf", b"%PDF")]}),
    ],
)
def test_line_breaks_in_header_values_are_refused_naming_the_field(build, field, kwargs):
    args = {"sender": SENDER, "to": ["a@x.example"], "subject": "s", "text": "t"} | kwargs

    with pytest.raises(InvalidInput) as caught:
        build(**args)

    assert caught.value.errors[0].field == field


def test_a_message_needs_a_recipient(build):
    with pytest.raises(InvalidInput) as caught:
        build(sender=SENDER, to=[], subject="s", text="t")

    assert caught.value.errors[0].field == "to"
