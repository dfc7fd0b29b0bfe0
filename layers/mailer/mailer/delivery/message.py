"""Build MIME messages with the standard `email` package: alternatives, attachments, inline images."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as _SMTP
from email.utils import format_datetime, make_msgid
from io import BytesIO

from mailer.errors import InvalidInput

# 7bit: non-ASCII bodies get quoted-printable or base64, so no server needs 8BITMIME.
SMTP = _SMTP.clone(cte_type="7bit")
_LINE_ENDS = re.compile(r"\r\n|\r|\n")  # what email.generator.NLCRE matches
_SLICE = 256 * 1024


@dataclass(frozen=True)
class Sender:
    from_email: str
    from_name: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    content_type: str = "application/pdf"


@dataclass(frozen=True)
class InlineImage:
    """An image the HTML refers to as `cid:<cid>`."""

    cid: str
    content: bytes
    content_type: str = "image/jpeg"
    filename: str | None = None


@dataclass
class OutgoingMessage:
    """A message and its envelope; BCC recipients are in the envelope only."""

    message: EmailMessage
    envelope_from: str
    recipients: tuple[str, ...]
    _bytes: bytes | None = field(default=None, repr=False)

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def as_bytes(self) -> bytes:
        if self._bytes is None:
            out = BytesIO()
            _Generator(out, mangle_from_=False, policy=SMTP).flatten(self.message, unixfrom=False)
            self._bytes = out.getvalue()
        return self._bytes


class _Generator(BytesGenerator):
    """BytesGenerator writing each body in ~256 KB slices, with the same bytes: the stock one splits
    a body into lines and writes them one at a time (180,000 calls for a 10 MB attachment)."""

    def _write_lines(self, lines: str) -> None:
        start, size = 0, len(lines)
        while start < size:  # slices of ~256 KB ending after a "\n", so no "\r\n" is cut in two
            end = lines.find("\n", start + _SLICE)
            end = size if end < 0 else end + 1
            self.write(_LINE_ENDS.sub(self._NL, lines[start:end]))  # type: ignore[attr-defined]  # set by Generator.flatten from the policy; not in typeshed
            start = end


# Every character str.splitlines() breaks on: the email package refuses them all in a header value
# (with a bare ValueError, a 500). The other control characters (tab aside) it folds so badly that a
# non-ASCII name beside one reaches the reader as a raw =?utf-8?q?...?= word. All are refused here.
LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
NOT_IN_HEADERS = LINE_BREAKS | frozenset(chr(c) for c in (*range(0x20), 0x7F) if c != 0x09)
HEADER_CHARS_MESSAGE = "must not contain line breaks or control characters"


def _checked(field_name: str, value: str) -> str:
    if not NOT_IN_HEADERS.isdisjoint(value):
        raise InvalidInput.on(field_name, HEADER_CHARS_MESSAGE)
    return value


# An RFC 2047 encoded word typed as text (`=?utf-8?b?...?=`) would be decoded by the receiver into
# whatever it hides (a line break and a Bcc header, say). The email package decodes such words
# wherever they stand, so the text is kept from forming one: its `=?` becomes `= ?`.
ENCODED_WORD = re.compile(r"=\?(?=[^?]*\?[bBqQ]\?[^?]*\?=)")


def literal(text: str) -> str:
    return ENCODED_WORD.sub("= ?", text)


def ascii_address(email: str) -> str:
    """The address with its domain in A-labels (xn--), as the envelope and the headers need it;
    a local part that is not ASCII is kept (it needs SMTPUTF8, which the transport asks for)."""
    local, at, domain = email.rpartition("@")
    if not at or domain.isascii():
        return email
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        raise InvalidInput.on("to", f"{email}: the domain is not a valid internationalised name") from None


def unique_addresses(addresses: Iterable[str]) -> list[str]:
    """Each address once, the first spelling kept: `Dana@x` and `dana@x` are one recipient."""
    seen: dict[str, str] = {}
    for address in addresses:
        seen.setdefault(address.casefold(), address)
    return list(seen.values())


def _address(field_name: str, email: str, name: str | None = None, name_field: str | None = None) -> Address:
    _checked(field_name, email)
    try:
        shown = literal(_checked(name_field or field_name, name or ""))
        return Address(display_name=shown, addr_spec=ascii_address(email))
    except (ValueError, IndexError, TypeError) as exc:
        raise InvalidInput.on(field_name, f"not a usable address: {exc}") from None


def _add_inline_images(msg: EmailMessage, images: list[InlineImage]) -> None:
    """Images the HTML shows by Content-ID, related to the HTML part just added."""
    if not images:
        return
    parts = msg.get_payload()
    assert isinstance(parts, list)  # multipart/alternative now: text, then the html just added
    html_part = parts[-1]
    assert isinstance(html_part, EmailMessage)
    for image in images:
        maintype, _, subtype = image.content_type.partition("/")
        html_part.add_related(
            image.content,
            maintype=maintype,
            subtype=subtype,
            cid=f"<{_checked('cid', image.cid)}>",
            filename=image.filename,
            disposition="inline",
        )


def build_message(
    *,
    sender: Sender,
    to: Sequence[str],
    subject: str,
    text: str,
    html: str | None = None,
    cc: Sequence[str] = (),
    bcc: Sequence[str] = (),
    attachments: Iterable[Attachment] = (),
    inline_images: Iterable[InlineImage] = (),
    automated: bool = False,
    headers: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> OutgoingMessage:
    """validate -> MIME. `bcc` never reaches a header."""
    if not to:
        raise InvalidInput.on("to", "at least one recipient is required")
    to = unique_addresses(to)
    cc = [a for a in unique_addresses(cc) if a.casefold() not in {t.casefold() for t in to}]
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address("from_email", sender.from_email, sender.from_name, "from_name")
    msg["To"] = [_address("to", addr) for addr in to]
    if cc:
        msg["Cc"] = [_address("cc", addr) for addr in cc]
    if sender.reply_to:
        msg["Reply-To"] = _address("reply_to", sender.reply_to)
    msg["Subject"] = literal(_checked("subject", subject))
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    domain = sender.from_email.rsplit("@", 1)[-1]
    msg["Message-ID"] = make_msgid(domain=domain)
    if automated:
        msg["Auto-Submitted"] = "auto-generated"
    for name, value in (headers or {}).items():
        msg[_checked("headers", name)] = _checked(name, value)

    msg.set_content(text, subtype="plain", charset="utf-8")
    if html is not None:
        msg.add_alternative(html, subtype="html", charset="utf-8")
        _add_inline_images(msg, list(inline_images))
    for attachment in attachments:
        maintype, _, subtype = attachment.content_type.partition("/")
        msg.add_attachment(
            attachment.content,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=_checked("filename", attachment.filename),
        )

    recipients = tuple(ascii_address(a) for a in unique_addresses([*to, *cc, *bcc]))
    return OutgoingMessage(message=msg, envelope_from=ascii_address(sender.from_email), recipients=recipients)
