"""Build MIME messages: alternatives, attachments, inline images.

Two builders make the same message. `build_message_stdlib` is the email package's own path
(`set_content`, `add_alternative`, `add_related`, `add_attachment`, then its generator); most of
its ~1.4 ms a plain message goes to parsing every header it is given and folding it back.
`build_message`, the lean path, builds the same tree of parts with the same headers and the same
bodies, and writes the wire bytes itself:

- a header whose value is printable ASCII is folded at its spaces, which unfolding (RFC 5322
  2.2.3) undoes exactly; any other value (non-ASCII names and subjects, long file names) is
  folded by the email package, from the same value, as the other path folds it;
- a body is encoded once, by email.contentmanager's rules (7bit, quoted-printable or base64, the
  same choice), an attachment's base64 straight into its final form: 76-character lines, CRLF.

`OutgoingMessage.message` stays an EmailMessage that callers read and change: a view over those
bytes whose header reads give the header object the other path holds, parsed on first read from
the value it was set from, and whose bodies become str when first read. A part a caller changes is
written by the email package's generator, the rest as built. tests/unit/test_message_lean.py holds
the two paths to the same message.
"""

from __future__ import annotations

import binascii
import operator
import random
import re
import sys
from collections.abc import Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import quoprimime, utils
from email.generator import BytesGenerator
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.policy import SMTP as _SMTP
from email.policy import EmailPolicy
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from io import BytesIO
from typing import TYPE_CHECKING, Any

from mailer.errors import InvalidInput

if TYPE_CHECKING:
    from typing_extensions import Buffer

_LINE_ENDS = re.compile(r"\r\n|\r|\n")  # what email.generator.NLCRE matches
_SLICE = 256 * 1024
MAX_LINE = 78  # the policies' max_line_length: headers fold there, bodies over it are encoded


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


class WireBytes:
    """The message as the wire carries it, in pieces: `b"".join(pieces)` is `as_bytes()`. A piece
    is a header block, a boundary line or one body in its final form, so a transport that writes
    the pieces one after another never holds the message twice. len() is the whole size; a buffer
    of the whole (PEP 688) is joined only when one is asked for."""

    __slots__ = ("pieces", "size")

    def __init__(self, pieces: Sequence[Buffer]) -> None:
        self.pieces = tuple(pieces)
        self.size = sum(memoryview(piece).nbytes for piece in self.pieces)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[Buffer]:
        return iter(self.pieces)

    def __buffer__(self, flags: int, /) -> memoryview:
        return memoryview(b"".join(self.pieces))


@dataclass
class OutgoingMessage:
    """A message and its envelope; BCC recipients are in the envelope only."""

    message: EmailMessage
    envelope_from: str
    recipients: tuple[str, ...]
    _bytes: bytes | None = field(default=None, repr=False)
    _wire: WireBytes | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def message_id(self) -> str:
        for name, value in self.message.raw_items():
            if name.lower() == "message-id":
                if isinstance(value, _Header) and value.plain:  # as built: no parse needed
                    return str(value.source)
                break
        return str(self.message["Message-ID"])

    def wire(self) -> WireBytes:
        """The bytes to send, in pieces (see WireBytes); the same bytes as `as_bytes()`."""
        if self._bytes is not None:
            return WireBytes((self._bytes,))
        if self._wire is None:
            self._wire = WireBytes(_message_pieces(self.message))
        return self._wire

    def as_bytes(self) -> bytes:
        if self._bytes is None:
            self._bytes = b"".join(self.wire().pieces)
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


def _message_id(sender: Sender) -> str:
    """A new Message-ID on the sender's domain, in A-labels: a Message-ID is ASCII only (with the
    domain as typed, an internationalised one failed when the message was written)."""
    return make_msgid(domain=ascii_address(sender.from_email).rsplit("@", 1)[-1])


def _recipients(to: Sequence[str], cc: Sequence[str], bcc: Sequence[str]) -> tuple[str, ...]:
    return tuple(ascii_address(a) for a in unique_addresses([*to, *cc, *bcc]))


# --- the email package's own path -------------------------------------------------------------------

_STDLIB_SMTP = _SMTP.clone(cte_type="7bit")  # 7bit: non-ASCII bodies get quoted-printable or base64


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


def build_message_stdlib(
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
    """validate -> MIME with the email package's EmailMessage API. `bcc` never reaches a header.
    What `build_message` falls back to for extra `headers` and unusual content types, and what the
    tests hold it to."""
    if not to:
        raise InvalidInput.on("to", "at least one recipient is required")
    to = unique_addresses(to)
    cc = [a for a in unique_addresses(cc) if a.casefold() not in {t.casefold() for t in to}]
    msg = EmailMessage(policy=_STDLIB_SMTP)
    msg["From"] = _address("from_email", sender.from_email, sender.from_name, "from_name")
    msg["To"] = [_address("to", addr) for addr in to]
    if cc:
        msg["Cc"] = [_address("cc", addr) for addr in cc]
    if sender.reply_to:
        msg["Reply-To"] = _address("reply_to", sender.reply_to)
    msg["Subject"] = literal(_checked("subject", subject))
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = _message_id(sender)
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

    recipients = _recipients(to, cc, bcc)
    return OutgoingMessage(message=msg, envelope_from=ascii_address(sender.from_email), recipients=recipients)


# --- the lean path ----------------------------------------------------------------------------------


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
    """validate -> MIME, the message `build_message_stdlib` makes, built by the lean path (see the
    module docstring). `bcc` never reaches a header. Extra `headers`, and a content type that is
    not a plain `type/subtype`, go the email package's way."""
    attachments = list(attachments)
    images = list(inline_images) if html is not None else []
    usual = all(_usual_type(*_attachment_type(a)) for a in attachments) and all(
        _usual_type(*i.content_type.partition("/")[::2]) for i in images
    )
    if headers or not usual:
        return build_message_stdlib(
            sender=sender,
            to=to,
            subject=subject,
            text=text,
            html=html,
            cc=cc,
            bcc=bcc,
            attachments=attachments,
            inline_images=images,
            automated=automated,
            headers=headers,
            now=now,
        )
    if not to:
        raise InvalidInput.on("to", "at least one recipient is required")
    to = unique_addresses(to)
    cc = [a for a in unique_addresses(cc) if a.casefold() not in {t.casefold() for t in to}]
    top = [
        _addresses("From", [_lean_address("from_email", sender.from_email, sender.from_name, "from_name")])
    ]
    top.append(_addresses("To", [_lean_address("to", addr) for addr in to], many=True))
    if cc:
        top.append(_addresses("Cc", [_lean_address("cc", addr) for addr in cc], many=True))
    if sender.reply_to:
        top.append(_addresses("Reply-To", [_lean_address("reply_to", sender.reply_to)]))
    top.append(_header("Subject", literal(_checked("subject", subject))))
    top.append(_header("Date", format_datetime(now or datetime.now(UTC))))
    top.append(_header("Message-ID", _message_id(sender)))
    if automated:
        top.append(_header("Auto-Submitted", "auto-generated"))

    text_headers, text_body, text_payload = _text_content(text, "plain")
    alternative: list[_Part] | None = None
    if html is not None:
        html_headers, html_body, html_payload = _text_content(html, "html")
        if images:
            related = [_Part.leaf(html_headers, html_body, html_payload)]
            related += [_image_part(image) for image in images]
            html_part = _Part.container([_MIME_VERSION], "related", related)
        else:
            html_part = _Part.leaf([*html_headers, _MIME_VERSION], html_body, html_payload)
        alternative = [_Part.leaf(text_headers, text_body, text_payload), html_part]
    files = [_attachment_part(attachment) for attachment in attachments]

    # The shapes set_content, add_alternative and add_attachment leave: MIME-Version stays with the
    # top headers, the content headers go to the first part inside.
    if alternative is None and not files:
        root = _Part.leaf([*top, *text_headers, _MIME_VERSION], text_body, text_payload)
    elif not files:
        assert alternative is not None
        root = _Part.container([*top, _MIME_VERSION], "alternative", alternative)
    else:
        first = (
            _Part.leaf(text_headers, text_body, text_payload)
            if alternative is None
            else _Part.container([], "alternative", alternative)
        )
        root = _Part.container([*top, _MIME_VERSION], "mixed", [first, *files])
    recipients = _recipients(to, cc, bcc)
    return OutgoingMessage(
        message=root, envelope_from=ascii_address(sender.from_email), recipients=recipients
    )


# A type/subtype the lean path writes as it stands: RFC 6838 names, not multipart or message (which
# the email package's generator writes differently). Anything else goes the email package's way.
_TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*")


def _attachment_type(attachment: Attachment) -> tuple[str, str]:
    maintype, _, subtype = attachment.content_type.partition("/")
    return maintype, subtype or "octet-stream"


def _usual_type(maintype: str, subtype: str) -> bool:
    return bool(
        _TYPE_NAME.fullmatch(maintype) and _TYPE_NAME.fullmatch(subtype)
    ) and maintype.lower() not in ("multipart", "message")


# An address whose Address(addr_spec=...) parse is known to succeed and give it back as it is: a
# dot-atom local part and a domain of letters, digits and hyphens. Anything else is parsed.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_ADDRESS = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")


def _lean_address(
    field_name: str, email: str, name: str | None = None, name_field: str | None = None
) -> Address:
    """`_address`, with the same checks and errors, without parsing an address that needs none."""
    _checked(field_name, email)
    shown = literal(_checked(name_field or field_name, name or ""))
    spec = ascii_address(email)
    if "=?" not in spec and _PLAIN_ADDRESS.fullmatch(spec):
        local, _, domain = spec.rpartition("@")
        return Address(display_name=shown, username=local, domain=domain)
    try:
        return Address(display_name=shown, addr_spec=spec)
    except (ValueError, IndexError, TypeError) as exc:
        raise InvalidInput.on(field_name, f"not a usable address: {exc}") from None


_SPECIALS = frozenset('()<>@,:;."[]\\')  # email._header_value_parser.SPECIALS: a name with one is quoted


def _address_text(address: Address) -> str | None:
    """The address as Address.__str__ writes it, when its display name is printable ASCII with
    single spaces; None when the email package must encode it."""
    name = address.display_name
    if not name:
        return address.addr_spec
    if "=?" in name or not _PLAIN_VALUE.fullmatch(name) or "  " in name:
        return None
    if not _SPECIALS.isdisjoint(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address.addr_spec}>"


def _addresses(name: str, addresses: list[Address], *, many: bool = False) -> tuple[str, _Header]:
    """An address header from what the other path sets it from: a list (To, Cc) or one address."""
    texts = [_address_text(a) for a in addresses]
    text = None if None in texts else ", ".join(t for t in texts if t is not None)
    key = ("addresses", many, tuple((a.display_name, a.username, a.domain) for a in addresses))
    return _header(name, addresses if many else addresses[0], text, key)


def _header(
    name: str, source: Any, text: str | None = None, key: Hashable | None = None
) -> tuple[str, _Header]:
    """(name, value) for a part's headers: folded here when its text (`source` itself when a str)
    is plain, else by the email package from `source` (its fold cached under `key`)."""
    if isinstance(source, str):
        if len(source.splitlines()) > 1:  # what EmailPolicy.header_store_parse refuses, refused alike
            raise ValueError("Header values may not contain linefeed or carriage return characters")
        text = source
    line = None if text is None else _plain_line(name, text)
    if line is not None:
        return name, _Header(name, line, source, True)
    return name, _Header(name, _folded_by_email_package(name, key or source), source, False)


@lru_cache(maxsize=512)
def _folded_by_email_package(name: str, key: Hashable) -> str:
    """The header as the email package folds it from the value it is set from: what the other path
    writes. Cached: a company's From is the same in every message."""
    source: Any = key
    if isinstance(key, tuple):
        _, many, triples = key
        found = [Address(display_name=d, username=u, domain=o) for d, u, o in triples]
        source = found if many else found[0]
    header: BaseHeader = SMTP.header_factory(name, source)
    return str(header.fold(policy=SMTP))


# Printable ASCII words with spaces between them and none at the ends: a value the lean path folds.
_PLAIN_VALUE = re.compile(r"[!-~]+(?: +[!-~]+)*")
_FOLD_POINT = re.compile(r"(?<! ) (?! )")  # a space with no other space beside it


def _plain_line(name: str, text: str) -> str | None:
    """`Name: text` folded before single spaces into lines of at most 78 characters, CRLF after
    each; None when `text` is not plain (or a word does not fit a line) and the email package must
    fold it. Unfolding (removing each CRLF) gives back `text` exactly."""
    if "=?" in text or not _PLAIN_VALUE.fullmatch(text):
        return None
    line = f"{name}: {text}"
    if len(line) <= MAX_LINE:
        return line + "\r\n"
    lines = []
    line, *words = _FOLD_POINT.split(line)
    for word in words:
        if len(line) + 1 + len(word) <= MAX_LINE:
            line = f"{line} {word}"
        else:
            lines.append(line)
            line = " " + word
    lines.append(line)
    if max(map(len, lines)) > MAX_LINE:
        return None
    return "\r\n".join(lines) + "\r\n"


class _Header(str):
    """A header value the lean path wrote. As a str it is the value as on the wire (folds
    included), so any policy writes it right; `line` is the whole header as the lean path writes
    it; `source` is what the other path sets the header from, so that reading it gives the very
    header object that path holds (parsed on first read). Immutable, so copies share it."""

    line: str
    source: Any
    plain: bool
    _named: str  # not `name`: the email package takes a value with a `name` for a header object

    def __new__(cls, name: str, line: str, source: Any, plain: bool) -> _Header:
        value = line[len(name) + 1 :].removesuffix("\r\n")
        self = super().__new__(cls, value.removeprefix(" "))
        self.line, self.source, self.plain, self._named = line, source, plain, name
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Header, (self._named, self.line, self.source, self.plain))

    def parsed(self, policy: EmailPolicy, name: str) -> Any:
        found = self.__dict__.get("_parsed")
        if found is None:
            found = self.__dict__["_parsed"] = policy.header_factory(name, self.source)
        return found

    def __copy__(self) -> _Header:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Header:
        return self


class _Registry(HeaderRegistry):
    """The email package's header registry, making each header class once: the stock one builds a
    new class (type()) for every header it parses, a third of the time a header read takes."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            made = self._made[key] = super().__getitem__(name)
        return made

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Registry, ())  # the classes it made are made again, not pickled


class _LeanPolicy(EmailPolicy):
    """policy.SMTP with 7-bit bodies that reads a header the lean path wrote from the value it was
    set from, and writes it as the lean path folded it."""

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if isinstance(value, _Header):
            return value.parsed(self, name)
        return super().header_fetch_parse(name, value)

    def fold(self, name: str, value: str) -> Any:
        if isinstance(value, _Header):
            return value.line if self.linesep == "\r\n" else value.line.replace("\r\n", self.linesep)
        return super().fold(name, value)

    def fold_binary(self, name: str, value: str) -> bytes:
        if isinstance(value, _Header):
            return str(self.fold(name, value)).encode("ascii")
        return super().fold_binary(name, value)


SMTP = _LeanPolicy(linesep="\r\n", cte_type="7bit", header_factory=_Registry())
_MIME_VERSION = _header("MIME-Version", "1.0")


class _Wire:
    """What the lean path wrote for one part: its headers, the header block as bytes (the empty line
    included), and a body in its final form (CRLF line ends) or a boundary and the parts inside."""

    __slots__ = ("body", "boundary", "head", "headers", "payload")

    def __init__(
        self,
        headers: Sequence[tuple[str, _Header]],
        *,
        body: bytes | bytearray | None = None,
        payload: str | None = None,
        boundary: str | None = None,
    ) -> None:
        self.headers = tuple(headers)
        self.head = ("".join(value.line for _, value in self.headers) + "\r\n").encode("ascii")
        self.body, self.payload, self.boundary = body, payload, boundary

    def payload_text(self) -> str | None:
        """The body as the email package holds a payload: a str with LF line ends."""
        if self.payload is None and self.body is not None:
            self.payload = self.body.decode("ascii").replace("\r\n", "\n")
        return self.payload

    def __copy__(self) -> _Wire:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Wire:
        return self


class _Part(EmailMessage):
    """A part of a message the lean path built: an EmailMessage as the email package's path would
    have made it, which also knows its wire bytes. A leaf's payload (the encoded body as a str) is
    made from those bytes when first read. A part built by other code, or changed since, is
    written by the email package's generator."""

    _headers: list[tuple[str, Any]]

    @classmethod
    def leaf(
        cls, headers: Sequence[tuple[str, _Header]], body: bytes | bytearray, payload: str | None = None
    ) -> _Part:
        return cls._made(_Wire(headers, body=body, payload=payload))

    @classmethod
    def container(cls, headers: Sequence[tuple[str, _Header]], subtype: str, parts: list[_Part]) -> _Part:
        boundary = _boundary(parts)
        content_type = _header("Content-Type", f'multipart/{subtype}; boundary="{boundary}"')
        part = cls._made(_Wire([*headers, content_type], boundary=boundary))
        part.__dict__.update(_payload_now=list(parts), _built=tuple(parts))
        return part

    @classmethod
    def _made(cls, wire: _Wire) -> _Part:
        part = cls(policy=SMTP)
        for name in ("_payload_now", "_touched"):  # what Message.__init__ set: nothing read, nothing changed
            part.__dict__.pop(name, None)
        part._headers = list(wire.headers)
        part.__dict__["_wire"] = wire
        return part

    @property
    def _payload(self) -> Any:
        found = self.__dict__
        if "_payload_now" not in found:
            wire = found.get("_wire")
            found["_payload_now"] = None if wire is None else wire.payload_text()
        return found["_payload_now"]

    @_payload.setter
    def _payload(self, value: Any) -> None:
        self.__dict__.update(_payload_now=value, _touched=True)

    def built_wire(self) -> _Wire | None:
        """What the lean path wrote for this part, while nothing in the part (its children aside)
        has changed since; else None."""
        found = self.__dict__
        wire: _Wire | None = found.get("_wire")
        if wire is None or "_touched" in found or self.preamble is not None or self.epilogue is not None:
            return None
        headers = self._headers
        if len(headers) != len(wire.headers) or not all(map(operator.is_, headers, wire.headers)):
            return None
        if wire.boundary is not None:
            payload, built = found.get("_payload_now"), found["_built"]
            if not isinstance(payload, list) or len(payload) != len(built):
                return None
            if not all(map(operator.is_, payload, built)):
                return None
        return wire


def _boundary(parts: Sequence[_Part]) -> str:
    """A boundary as the email package makes one, that no 7bit body inside uses (base64 and
    quoted-printable bodies cannot hold its `==`)."""
    texts = [w.body for w in _leaves(parts) if w.body is not None and _is_7bit(w)]
    token = "=" * 15 + f"{random.randrange(sys.maxsize):019d}" + "=="
    boundary, counter = token, 0
    while any(b"--" + boundary.encode("ascii") in text for text in texts):
        boundary, counter = f"{token}.{counter}", counter + 1
    return boundary


def _is_7bit(wire: _Wire) -> bool:
    return any(name == "Content-Transfer-Encoding" and value == "7bit" for name, value in wire.headers)


def _leaves(parts: Iterable[_Part]) -> Iterator[_Wire]:
    for part in parts:
        wire = part.__dict__["_wire"]
        if wire.boundary is None:
            yield wire
        else:
            yield from _leaves(part.__dict__["_built"])


def _text_content(text: str, subtype: str) -> tuple[list[tuple[str, _Header]], bytes, str]:
    """(headers, wire body, payload) of a UTF-8 text part, as set_content(text) makes it."""
    cte, payload = _text_payload(text)
    headers = [
        _header("Content-Type", f'text/{subtype}; charset="utf-8"'),
        _header("Content-Transfer-Encoding", cte),
    ]
    return headers, payload.replace("\n", "\r\n").encode("ascii"), payload


def _image_part(image: InlineImage) -> _Part:
    """An inline image as add_related(..., cid=, filename=, disposition="inline") makes it."""
    maintype, _, subtype = image.content_type.partition("/")
    cid = f"<{_checked('cid', image.cid)}>"
    headers = [
        _header("Content-Type", f"{maintype}/{subtype}"),
        _header("Content-Transfer-Encoding", "base64"),
        _header("Content-Disposition", _disposition("inline", image.filename)),
        _header("Content-ID", cid),
        _MIME_VERSION,
    ]
    return _Part.leaf(headers, _base64_lines(image.content))


def _attachment_part(attachment: Attachment) -> _Part:
    """An attachment as add_attachment(..., filename=) makes it."""
    maintype, subtype = _attachment_type(attachment)
    filename = _checked("filename", attachment.filename)
    headers = [
        _header("Content-Type", f"{maintype}/{subtype}"),
        _header("Content-Transfer-Encoding", "base64"),
        _header("Content-Disposition", _disposition("attachment", filename)),
        _MIME_VERSION,
    ]
    return _Part.leaf(headers, _base64_lines(attachment.content))


def _disposition(kind: str, filename: str | None) -> str:
    """Content-Disposition as set_param("filename", ...) writes it (email.message._formatparam)."""
    if filename is None:
        return kind
    if not filename:
        return f"{kind}; filename"
    if not filename.isascii():
        return f"{kind}; filename*={utils.encode_rfc2231(filename, 'utf-8', '')}"
    return f'{kind}; filename="{utils.quote(filename)}"'


# --- bodies -----------------------------------------------------------------------------------------

_B64_LINE = 57  # bytes a 76-character base64 line carries: what the email package writes at 78
_B64_STEP = _B64_LINE * 4096  # bytes encoded at a time: ~233 KB in, ~319 KB out


def _base64_lines(data: Buffer) -> bytearray:
    """`data` in base64 as the email package writes it (76 characters a line, CRLF after each),
    written straight into a buffer of its final size: no other copy of the whole is made."""
    size = memoryview(data).nbytes
    full, rest = divmod(size, _B64_LINE)
    out = bytearray(full * (76 + 2) + ((rest + 2) // 3 * 4 + 2 if rest else 0))
    view, at = memoryview(data).cast("B"), 0
    for start in range(0, size, _B64_STEP):
        encoded = binascii.b2a_base64(view[start : start + _B64_STEP], newline=False)
        lines = b"\r\n".join([encoded[i : i + 76] for i in range(0, len(encoded), 76)]) + b"\r\n"
        out[at : at + len(lines)] = lines
        at += len(lines)
    return out


def _text_payload(text: str) -> tuple[str, str]:
    """(Content-Transfer-Encoding, payload) of a UTF-8 text body: email.contentmanager's rule for
    set_content(str) under policy.SMTP with 7-bit bodies. 7bit when every line is ASCII and at most
    78 bytes long; else quoted-printable, unless base64 makes the first ten lines shorter."""
    lines = text.encode("utf-8").splitlines()
    body = b"\n".join(lines) + b"\n"
    if max(map(len, lines), default=0) <= MAX_LINE and body.isascii():
        return "7bit", body.decode("ascii")
    encoded = _quoted_printable_lines(body)
    sniffed = lines[:10]  # what the rule compares: those lines, CRLF after each
    sniff_qp = sum(map(len, encoded[: len(sniffed)])) + len(sniffed)
    sniff_base64 = (sum(map(len, sniffed)) + 2 * len(sniffed) + 2) // 3 * 4 + 1
    if sniff_qp > sniff_base64:
        return "base64", _base64_lines(b"\r\n".join(lines) + b"\r\n").decode("ascii").replace("\r\n", "\n")
    return "quoted-printable", "\n".join(encoded) + "\n"


_QP_OTHER = re.compile(rb"[^\t\n\r -~]")  # besides "=", what quoprimime's body map writes as =XX


def _quoted_printable_lines(body: bytes) -> list[str]:
    """Each line of `body` (LF-separated, LF at the end) as quoprimime.body_encode(body, 78)
    writes it, soft line breaks as "=\\n"."""
    escaped = body.replace(b"=", b"=3D")
    if _QP_OTHER.search(escaped):
        escaped = _QP_OTHER.sub(lambda found: b"=%02X" % found[0][0], escaped)
    lines = escaped.decode("ascii").split("\n")[:-1]
    return [_qp_line(line) if len(line) > MAX_LINE or line[-1:] in (" ", "\t") else line for line in lines]


def _qp_line(line: str) -> str:
    """One escaped line broken as quoprimime.body_encode breaks it at 78 (its own loop)."""
    pieces, start, last_start = [], 0, len(line) - 1 - MAX_LINE
    while start <= last_start:
        stop = start + MAX_LINE - 1
        if line[stop - 2] == "=":  # never cut an escape: its "=" ends this line as the soft break
            pieces.append(line[start : stop - 1])
            start = stop - 2
        elif line[stop - 1] == "=":
            pieces.append(line[start:stop])
            start = stop - 1
        else:
            pieces.append(line[start:stop] + "=")
            start = stop
    if line and line[-1] in " \t":
        room = start - last_start
        space = quoprimime.quote(line[-1])
        end = space if room >= 3 else line[-1] + "=\n" if room == 2 else "=\n" + space
        pieces.append(line[start:-1] + end)
    else:
        pieces.append(line[start:])
    return "\n".join(pieces)


# --- writing ----------------------------------------------------------------------------------------


def _message_pieces(message: Message) -> list[Buffer]:
    """The message's wire bytes in pieces: what the lean path wrote for every part left as built,
    the email package's generator for the rest."""
    pieces: list[Buffer] = []
    if _add_pieces(message, pieces, ()):
        return pieces
    # A changed part has a line that a boundary around it uses: let the generator choose new ones.
    for part in message.walk():
        if part.is_multipart():
            part.del_param("boundary")
    return [_flattened(message)]


def _add_pieces(part: Message, pieces: list[Buffer], around: tuple[bytes, ...]) -> bool:
    """Add the part's bytes; False when a changed part collides with a boundary in `around`."""
    wire = part.built_wire() if isinstance(part, _Part) else None
    if wire is None:
        written = _flattened(part)
        if any(b"--" + boundary in written for boundary in around):
            return False
        pieces.append(written)
        return True
    pieces.append(wire.head)
    if wire.boundary is None:
        assert wire.body is not None
        pieces.append(wire.body)
        return True
    boundary = wire.boundary.encode("ascii")
    inside = (*around, boundary)
    for index, child in enumerate(part.__dict__["_built"]):
        pieces.append(b"%s--%s\r\n" % (b"\r\n" if index else b"", boundary))
        if not _add_pieces(child, pieces, inside):
            return False
    pieces.append(b"\r\n--%s--\r\n" % boundary)
    return True


def _flattened(part: Message) -> bytes:
    out = BytesIO()
    _Generator(out, mangle_from_=False, policy=SMTP).flatten(part, unixfrom=False)
    return out.getvalue()
