"""The lean path (`build_message`) makes the message the email package's own path makes
(`build_message_stdlib`), for any input a user or a template can produce.

1. On the wire: both messages parsed back with policy.default have the same parts, in the same
   tree, with the same headers (name and decoded value) and the same decoded bodies. Message-ID and
   Date are fixed (make_msgid patched, `now`); boundaries are random, so they are left out. Leading
   whitespace in a value is left out too: it is folding, which Python's parser keeps when the email
   package starts a value on the line after its name ("Subject:\\r\\n Reminder ..."). An address
   header is compared address by address: as the other path's reads back, or as it was set where
   the email package's own folding loses it (a long quoted name with a comma: it folds the quotes
   away, and the reader sees two addresses).
2. As an EmailMessage: `OutgoingMessage.message` reads as the other path's does (every header's
   value, address by address, every payload as the email package holds it), and the email
   package's generator writes it to exactly the bytes the lean path wrote.
3. The same input is refused alike, with the same error.
4. The wire in pieces: what the SMTP transport writes piece by piece (dot-stuffed for DATA) is what
   smtplib writes for the joined bytes; an attachment's base64 is the email package's.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import replace
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailer.delivery import message as mime
from mailer.delivery.message import (
    Attachment,
    InlineImage,
    OutgoingMessage,
    Sender,
    WireBytes,
    build_message,
    build_message_stdlib,
)
from mailer.delivery.transports import smtp
from mailer.errors import InvalidInput

SETTINGS = settings(
    max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)

# Text as names, subjects and file names hold it: every code point but surrogates, weighted towards
# what header syntax, folding and RFC 2047 care about; control characters and line breaks too (the
# builders refuse them alike). Printable ASCII words, so that long plain values fold.
TRICKY = [*' \t"\\()<>[]:;@,.=?_%\xa0\xad', "\u200b", "\u202e", "\U0001f600", "é", "中", "=?", "?=", "  "]
CONTROLS = [*"\r\n\x00\x0b\x1b\x7f\x85\u2028"]
words = st.lists(st.from_regex(r"[A-Za-z0-9.,:'&-]{1,14}", fullmatch=True), min_size=1, max_size=18).map(
    " ".join
)
plain_or_not = st.one_of(st.characters(exclude_categories=("Cs",)), st.sampled_from(TRICKY))
header_text = st.one_of(
    words,
    st.lists(plain_or_not, max_size=90).map("".join),
    st.lists(st.one_of(plain_or_not, st.sampled_from(CONTROLS)), max_size=12).map("".join),
)
body_line = st.one_of(
    words,
    st.lists(st.characters(exclude_categories=("Cs",)), max_size=120).map("".join),
    st.from_regex(r"[ -~]{70,200}", fullmatch=True),  # long ASCII lines: quoted-printable
    st.sampled_from(
        [".", "..", ".dot first", "From here", "", " ", "trailing \t", "=3D", "--==============="]
    ),
)
body = st.lists(body_line, max_size=25).flatmap(
    lambda lines: st.sampled_from(["\n", "\r\n", "\r"]).map(lambda end: end.join(lines))
)
ADDRESSES = [
    "dana@customer.example",
    "Dana@Customer.example",
    "o'brien+invoices@customer.example",
    "first.last@sub.customer.example",
    "office@bücher.example",
    '"john doe"@customer.example',
    "x@[192.0.2.1]",
    "billing@acme.example",
]
address = st.sampled_from(ADDRESSES)
CONTENT_TYPES = [
    "application/pdf",
    "application/",
    "image/png",
    "text/csv",
    "Application/PDF",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "multipart/mixed",  # not plain: both builders go the email package's way
    "bad type/x",
]
content = st.one_of(st.binary(max_size=600), st.binary(min_size=3000, max_size=9000))
attachment = st.builds(Attachment, header_text, content, st.sampled_from(CONTENT_TYPES))
image = st.builds(
    InlineImage,
    st.one_of(st.from_regex(r"[a-z0-9.-]{1,20}", fullmatch=True), header_text),
    content,
    st.sampled_from(["image/jpeg", "image/png", "image/", "IMAGE/GIF"]),
    st.none() | header_text,
)
inputs = st.fixed_dictionaries(
    {
        "sender": st.builds(
            Sender,
            st.sampled_from(["billing@acme.example", "rechnung@bücher.example", "a.b@mail.acme.example"]),
            st.none() | header_text,
            st.none() | address,
        ),
        "to": st.lists(address, min_size=1, max_size=3),
        "cc": st.lists(address, max_size=2),
        "bcc": st.lists(address, max_size=2),
        "subject": header_text,
        "text": body,
        "html": st.none() | body,
        "attachments": st.lists(attachment, max_size=3),
        "inline_images": st.lists(image, max_size=3),
        "automated": st.booleans(),
    }
)

LARGE = {
    "sender": Sender(
        "billing@acme.example", "Müller & Søn, Heizung und Sanitär GmbH & Co. KG", "r@acme.example"
    ),
    "to": ["dana@customer.example", "office@bücher.example"],
    "cc": ["first.last@sub.customer.example"],
    "bcc": ["archive@acme.example"],
    "subject": "Reminder: your appointment on Tuesday, November 24, 2026 with Acme Plumbing and Heating",
    "text": "Hello Dana,\n\n" + "A line that goes on and on, well past seventy-eight characters. " * 4,
    "html": '<p style="color: #222">Hello</p>\n' * 40,
    "attachments": [Attachment("Rechnung Nr. 1001 – März.pdf", bytes(range(256)) * 1200)],
    "inline_images": [InlineImage("logo", b"\xff\xd8\xff\xe0" * 300, "image/jpeg", "logo.jpg")],
    "automated": True,
}


def built(make, values: dict[str, Any]) -> OutgoingMessage | tuple[str, list[str]]:
    """The message, or what refused it: the exception's type and the fields it names."""
    with patch.object(mime, "make_msgid", lambda domain: f"<20261123120000.4242.1@{domain}>"):
        try:
            return make(**values, now=NOW)
        except InvalidInput as refused:
            return "InvalidInput", [e.field for e in refused.errors]
        except (ValueError, UnicodeError) as refused:
            return type(refused).__name__, []


def without_boundary(name: str, value: str) -> str:
    if name.lower() == "content-type":
        return re.sub(r';\s*boundary="[^"]*"', "", value)
    return value


def read(message: EmailMessage, *, parsed: bool) -> list[dict[str, Any]]:
    """Every part, in tree order: its headers as read back (name, value, and the addresses of an
    address header), its type and parameters, its file name and its body (decoded for a parsed
    message; the payload as held for a built one)."""
    parts = []
    for part in message.walk():
        headers = []
        for name, value in part.items():
            text = without_boundary(name, str(value))
            addresses = [(a.display_name, a.addr_spec) for a in getattr(value, "addresses", ())]
            headers.append((name, text.lstrip(" \t") if parsed else text, addresses))
        parts.append(
            {
                "headers": headers,
                "type": part.get_content_type(),
                "params": [p for p in part.get_params() or [] if p[0] != "boundary"],
                "filename": part.get_filename(),
                "disposition": part.get_content_disposition(),
                "body": None
                if part.is_multipart()
                else part.get_payload(decode=True)
                if parsed
                else part.get_payload(),
            }
        )
    return parts


def strip_addresses(part: dict[str, Any]) -> dict[str, Any]:
    """The part with only the names of its address headers (compared address by address)."""
    headers = [(n, None if addresses else v) for n, v, addresses in part["headers"]]
    return part | {"headers": headers}


def on_the_wire(outgoing: OutgoingMessage) -> list[dict[str, Any]]:
    parsed = message_from_bytes(outgoing.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return read(parsed, parsed=True)


# --- 1 to 3: the same message, or the same refusal ----------------------------------------------------


@SETTINGS
@given(values=inputs)
@example(values=LARGE)
@example(values=LARGE | {"attachments": [Attachment("report.pdf", bytes(300_000))]})
@example(values=LARGE | {"html": None})
@example(values=LARGE | {"attachments": [], "inline_images": []})
def test_the_lean_path_builds_the_message_the_email_package_builds(values: dict[str, Any]) -> None:
    lean, stdlib = built(build_message, values), built(build_message_stdlib, values)

    if not isinstance(stdlib, OutgoingMessage):
        assert lean == stdlib, "refused alike"
        return
    assert isinstance(lean, OutgoingMessage), f"the lean path refused what the other built: {lean}"
    wire, other_wire, other = on_the_wire(lean), on_the_wire(stdlib), read(stdlib.message, parsed=False)
    assert [strip_addresses(p) for p in wire] == [strip_addresses(p) for p in other_wire]
    for part, other_part, as_set in zip(wire, other_wire, other, strict=True):
        for (name, _, addresses), (_, _, other_addresses), (_, _, set_to) in zip(
            part["headers"], other_part["headers"], as_set["headers"], strict=True
        ):
            # An address header reads back as the other path's, or as it was set where that one's
            # own folding loses it (a long quoted name with a comma: the email package folds the
            # quotes away, and the reader sees two addresses).
            assert addresses in (other_addresses, set_to), name
    assert (lean.envelope_from, lean.recipients, lean.message_id) == (
        stdlib.envelope_from,
        stdlib.recipients,
        stdlib.message_id,
    )
    # the built EmailMessage reads as the other path's (whose boundaries as_bytes has set)
    assert read(lean.message, parsed=False) == read(stdlib.message, parsed=False)
    # and the email package's generator writes it exactly as the lean path did
    assert lean.message.as_bytes() == lean.as_bytes()
    assert b"".join(lean.wire()) == lean.as_bytes() and len(lean.wire()) == len(lean.as_bytes())


def test_a_plain_reminder_is_folded_by_the_lean_path_and_reads_back_exactly() -> None:
    out = build_message(
        sender=Sender("office@acme.example", "Acme Plumbing"),
        to=["wo-00001@customer.example"],
        subject=LARGE["subject"],
        text="Hello",
        html="<p>Hello</p>",
        automated=True,
    )

    head = out.as_bytes().split(b"\r\n\r\n", 1)[0]
    assert b"Subject: Reminder: your appointment on Tuesday, November 24, 2026 with Acme\r\n" in head
    assert max(len(line) for line in head.split(b"\r\n")) <= 78
    assert out.message["Subject"] == LARGE["subject"]
    assert [a.addr_spec for a in out.message["To"].addresses] == ["wo-00001@customer.example"]


# --- a view that callers change -----------------------------------------------------------------------


def test_a_changed_html_part_is_written_by_the_email_package_and_the_rest_as_built() -> None:
    """What the open pixel does: set_content on the HTML part, then the message without its bytes."""
    out = build_message(**LARGE, now=NOW)
    pdf_body = next(p for p in out.wire() if len(p) > 100_000)
    html = next(p for p in out.message.walk() if p.get_content_type() == "text/html")

    html.set_content(html.get_content() + "<img src=x>", subtype="html", charset="utf-8")
    changed = replace(out, _bytes=None)

    assert any(piece is pdf_body for piece in changed.wire()), "the attachment's base64 is not copied"
    parsed = message_from_bytes(changed.as_bytes(), policy=policy.default)
    assert parsed.get_body(("html",)).get_content().endswith("<img src=x>\r\n")  # CRLF as on the wire
    [pdf] = parsed.iter_attachments()
    assert pdf.get_content() == LARGE["attachments"][0].content
    assert changed.as_bytes() == changed.message.as_bytes()


def test_a_copy_without_its_attachments_is_written_by_the_email_package() -> None:
    """What the Graph transport does for a large message: deepcopy, drop the attachments."""
    out = build_message(**LARGE, now=NOW)

    draft = copy.deepcopy(out.message)
    draft.set_payload([p for p in draft.iter_parts() if not p.is_attachment()])
    written = OutgoingMessage(message=draft, envelope_from=out.envelope_from, recipients=out.recipients)

    parsed = message_from_bytes(written.as_bytes(), policy=policy.default)
    assert list(parsed.iter_attachments()) == []
    text = parsed.get_body(("plain",)).get_content()
    assert text == out.message.get_body(("plain",)).get_content().replace("\n", "\r\n")  # CRLF as on the wire
    assert len(list(out.message.iter_attachments())) == 1, "the original keeps its attachment"
    assert on_the_wire(out)[-1]["body"] == LARGE["attachments"][0].content


# --- 4. the wire in pieces ----------------------------------------------------------------------------


def smtplib_data(content: bytes) -> bytes:
    """What smtplib's data() writes after the 354 (its _quote_periods, then the ending)."""
    quoted = re.sub(rb"(?m)^\.", b"..", content)
    return (quoted if quoted.endswith(b"\r\n") else quoted + b"\r\n") + b".\r\n"


pieces = st.lists(
    st.lists(st.sampled_from([b".", b"\r\n", b"\n", b"\r", b"a", b"..", b"\r\n.\r\n"]), max_size=12).map(
        b"".join
    ),
    max_size=8,
)


@SETTINGS
@given(parts=pieces, write=st.integers(1, 9))
@example(parts=[b".a\r\n", b".", b"\r\n..\r\n", b"."], write=1)
@example(parts=[], write=3)
def test_the_dot_stuffed_content_in_writes_is_what_smtplib_sends(parts: list[bytes], write: int) -> None:
    with patch.object(smtp, "_WRITE", write):
        writes = list(smtp._dot_stuffed(WireBytes(parts)))

    assert b"".join(writes) == smtplib_data(b"".join(parts))
    assert all(len(w) <= 2 * write for w in writes[:-1]), (
        "each write is a slice (dot-stuffing at most doubles it)"
    )


@pytest.mark.parametrize(
    "size", [0, 1, 56, 57, 58, mime._B64_STEP - 1, mime._B64_STEP, 2 * mime._B64_STEP + 58]
)
def test_base64_is_written_as_the_email_package_writes_it(size: int) -> None:
    data = bytes(range(256)) * (size // 256 + 1)
    data = data[:size]

    assert mime._base64_lines(data) == base64.encodebytes(data).replace(b"\n", b"\r\n")
