"""Bounce reports (RFC 3464 delivery status notifications) -> one BounceReport per recipient.

Pure parsing, no network. Anyone can send mail to the sending mailbox, so the input is untrusted:
anything that is not a `multipart/report; report-type=delivery-status` with the original's
Message-ID gives [], nothing raises, and sizes are capped (the bytes parsed, the recipients per
report, every field's length).

The report's `message/delivery-status` part is header-like field groups separated by blank lines:
the first holds the per-message fields (Reporting-MTA, Arrival-Date), each further one a
recipient's (Final-Recipient, Action, Status, Diagnostic-Code). The email package splits that part
into sub-messages, one per group; it is turned back into text and read with one parser here, which
also reads it when it arrives as plain (or base64 / quoted-printable encoded) text. The original
Message-ID comes from the returned `message/rfc822` part or a `text/rfc822-headers` part (Postfix,
Exchange Online and Gmail each use one or the other).
"""

from __future__ import annotations

import base64
import binascii
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import collapse_rfc2231_value

# Bytes of a report read (and fetched over IMAP), from its start: the status and the returned
# headers come before the returned message's body and attachments.
MAX_REPORT_BYTES = 1024 * 1024
MAX_RECIPIENTS = 100  # recipient groups read from one report
MAX_DIAGNOSTIC = 500
MAX_FIELD = 1000  # characters kept of any one field, before it is trimmed further

ACTIONS = frozenset({"failed", "delayed", "delivered", "relayed", "expanded"})
REPORT_TYPES = frozenset({"delivery-status", "global-delivery-status"})  # RFC 3464, RFC 6533
STATUS_PARTS = frozenset({"message/delivery-status", "message/global-delivery-status"})
RETURNED_MESSAGE_PARTS = frozenset({"message/rfc822", "message/global"})
RETURNED_HEADERS_PARTS = frozenset({"text/rfc822-headers", "message/global-headers"})

STATUS_CODE = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.])")
TYPED_VALUE = re.compile(r"^\s*[A-Za-z][A-Za-z0-9.+_-]*\s*;\s*(.*)$", re.DOTALL)  # "rfc822; a@b.example"
ANGLE_ID = re.compile(r"<([^<>\s]+)>")
RECIPIENT_FIELDS = ("final-recipient", "original-recipient")


@dataclass(frozen=True)
class BounceReport:
    message_id: str  # the original message's Message-ID, without angle brackets
    recipient: str  # Final-Recipient's address (else Original-Recipient's), without its type
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # the x.y.z status code, "" when the report gives none
    diagnostic: str | None  # Diagnostic-Code without its type ("smtp;"), whitespace collapsed
    reporting_mta: str | None  # Reporting-MTA without its type ("dns;")
    permanent: bool  # failed with a 5.x.x status: the address will not take mail


def parse_report(raw: bytes) -> list[BounceReport]:
    """The per-recipient reports of a DSN, at most MAX_RECIPIENTS; [] for any other mail."""
    try:
        return _parse(raw[:MAX_REPORT_BYTES])
    except Exception:  # noqa: BLE001 - mail from anyone: what the email package cannot read is no report
        return []


def _parse(raw: bytes) -> list[BounceReport]:
    report = message_from_bytes(raw, policy=compat32)
    if report.get_content_type() != "multipart/report" or _param(report, "report-type") not in REPORT_TYPES:
        return []
    parts = _payload_list(report)
    status_part = next((p for p in parts if p.get_content_type() in STATUS_PARTS), None)
    message_id = _original_message_id(parts)
    if status_part is None or message_id is None:
        return []
    per_message: dict[str, str] = {}
    recipients: list[dict[str, str]] = []
    for index, group in enumerate(_field_groups(_status_text(status_part))):
        if _is_recipient_group(group):
            recipients.append(group)
            if len(recipients) == MAX_RECIPIENTS:
                break  # the text after them is never read
        elif index == 0:
            per_message = group
    reporting_mta = _untyped(per_message.get("reporting-mta"))
    found = []
    for group in recipients:
        bounce = _bounce(group, message_id, reporting_mta or _untyped(group.get("reporting-mta")))
        if bounce is not None:
            found.append(bounce)
    return found


def _is_recipient_group(group: dict[str, str]) -> bool:
    return any(name in group for name in RECIPIENT_FIELDS)


def _bounce(group: dict[str, str], message_id: str, reporting_mta: str | None) -> BounceReport | None:
    recipient = _address(group.get("final-recipient")) or _address(group.get("original-recipient"))
    words = (group.get("action") or "").lower().split()
    action = words[0] if words else ""
    if not recipient or action not in ACTIONS:
        return None
    status = _status_code(group.get("status")) or _status_code(group.get("diagnostic-code")) or ""
    diagnostic = _untyped(group.get("diagnostic-code"))
    return BounceReport(
        message_id=message_id,
        recipient=recipient,
        action=action,
        status=status,
        diagnostic=diagnostic[:MAX_DIAGNOSTIC] if diagnostic else None,
        reporting_mta=reporting_mta,
        permanent=action == "failed" and status.startswith("5"),
    )


# --- the delivery-status part as text -------------------------------------------------------------


def _status_text(part: Message) -> str:
    """The part's field groups as text, whether the email package split it into sub-messages (one
    per group, as it does for message/delivery-status) or left it as a string."""
    payload = part.get_payload()
    if isinstance(payload, list):
        text = "\n\n".join(_block_text(block) for block in payload if isinstance(block, Message))
    elif isinstance(payload, str):
        text = payload
    else:
        return ""
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    raw = text.encode("utf-8", "surrogateescape")
    if encoding == "base64":
        try:
            raw = base64.b64decode(b"".join(raw.split()))
        except (binascii.Error, ValueError):
            return ""
    elif encoding == "quoted-printable":
        raw = quopri.decodestring(raw)
    return raw.decode("utf-8", "replace")


def _block_text(block: Message) -> str:
    """A sub-message back as its field lines (and any text the parser did not take for fields)."""
    lines = [f"{name}: {value}" for name, value in block.raw_items()]
    rest = block.get_payload()
    if isinstance(rest, str) and rest.strip():
        lines += ["", rest] if lines else [rest]
    elif isinstance(rest, list):
        lines += ["", *(_block_text(m) for m in rest if isinstance(m, Message))]
    return "\n".join(lines)


def _field_groups(text: str) -> Iterator[dict[str, str]]:
    """Blank-line separated groups of `Name: value` fields (names lower-cased, folded lines joined,
    the first of a repeated field kept), read lazily."""
    group: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        if not line.strip():
            if group:
                yield group
            group, current = {}, None
        elif line[0] in " \t":
            if current is not None:
                group[current] = f"{group[current]} {line.strip()}"[:MAX_FIELD]
        else:
            name, colon, value = line.partition(":")
            name = name.strip().lower()
            if not colon or not name or " " in name or name in group:
                current = None
                continue
            group[name] = value.strip()[:MAX_FIELD]
            current = name
    if group:
        yield group


# --- the original message -------------------------------------------------------------------------


def _original_message_id(parts: list[Message]) -> str | None:
    for part in parts:
        kind = part.get_content_type()
        if kind in RETURNED_MESSAGE_PARTS or (kind in RETURNED_HEADERS_PARTS and part.is_multipart()):
            headers = next(iter(_payload_list(part)), None)
        elif kind in RETURNED_HEADERS_PARTS:
            body = part.get_payload(decode=True)
            headers = BytesHeaderParser(policy=compat32).parsebytes(body) if isinstance(body, bytes) else None
        else:
            continue
        found = _message_id(headers) if headers is not None else None
        if found:
            return found
    return None


def _message_id(headers: Message) -> str | None:
    value = next((v for name, v in headers.raw_items() if name.strip().lower() == "message-id"), None)
    if value is None:
        return None
    text = _clean(value)
    match = ANGLE_ID.search(text)
    if match:
        return match.group(1)[:MAX_FIELD]
    bare = text.strip("<> ")
    return bare[:MAX_FIELD] if bare and " " not in bare else None


# --- field values ---------------------------------------------------------------------------------


def _untyped(value: str | None) -> str | None:
    """A typed field's value without its type (`dns; mx.example.com` -> `mx.example.com`),
    whitespace collapsed; None when empty."""
    if value is None:
        return None
    text = _clean(value)
    match = TYPED_VALUE.match(text)
    if match:
        text = match.group(1)
    return text.strip() or None


def _address(value: str | None) -> str | None:
    text = _untyped(value)
    return (text.strip("<>").strip() or None) if text else None


def _status_code(value: str | None) -> str | None:
    match = STATUS_CODE.search(value or "")
    return match.group(1) if match else None


def _clean(value: str) -> str:
    """Header text as read (8-bit bytes are surrogates in it) -> real text, whitespace collapsed."""
    text = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return " ".join(text.split())


def _param(message: Message, name: str) -> str | None:
    value = message.get_param(name)
    if value is None:
        return None
    text = (
        value if isinstance(value, str) else collapse_rfc2231_value(value)
    )  # RFC 2231 (charset, lang, text)
    return text.strip().lower()


def _payload_list(message: Message) -> list[Message]:
    payload = message.get_payload()
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
