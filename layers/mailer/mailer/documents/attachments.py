"""Attachment policy: an upload is attached only if it is the company's, of the size it was declared with
and within the limit, not empty, named as its type, and really of the type it claims. A resend attaches
the very files that were sent."""

from __future__ import annotations

import contextlib
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from mailer.dal.attachments_bucket import AttachmentStore, StoredUpload
from mailer.delivery.message import Attachment
from mailer.documents.models import AttachmentRef, AttachmentVersion
from mailer.errors import (
    Conflict,
    FieldError,
    Gone,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
)
from mailer.sent_log.models import AttachmentInfo

# Content types an upload may declare, with the bytes a real file of that type starts with.
ALLOWED_UPLOADS: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "text/csv": (),
    "text/plain": (),
}
# The extensions a file of each type may have: the name decides how the recipient's computer opens it.
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "application/pdf": (".pdf",),
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "text/csv": (".csv",),
    "text/plain": (".txt",),
}
# Unicode categories a file name may not hold: controls (C0, DEL, C1), format characters (zero-width
# characters, the byte order mark, the bidi embeddings, overrides and isolates U+202A..U+202E and
# U+2066..U+2069, the marks U+200E/U+200F), surrogates, private use, line and paragraph separators.
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}
_PATH_CHARACTERS = set('/\\:*?"<>|')
# A PDF ends with %%EOF within its last 1024 bytes (readers look no further), and is no web page.
_PDF_END_WINDOW = 1024
_HTML_WINDOW = 4096
_HTML_MARKERS = (b"<!doctype", b"<html", b"<head", b"<body", b"<script", b"<iframe", b"<svg")


def filename_problem(filename: str, content_type: str) -> str | None:
    """Why `filename` may not carry a file of `content_type`; None when it may."""
    for char in filename:
        if unicodedata.category(char) in _INVISIBLE:
            return f"must not contain control, invisible or text-direction characters (U+{ord(char):04X})"
        if char in _PATH_CHARACTERS:
            return "must be a plain file name (no path, no control characters)"
    if filename.startswith("."):
        return "must be a plain file name (no path, no control characters)"
    allowed = EXTENSIONS.get(content_type)
    if not allowed:
        return f"{content_type} files cannot be attached"
    _, dot, extension = filename.rpartition(".")
    if not dot or f".{extension.lower()}" not in allowed:
        return f"must end in {' or '.join(allowed)} for a file of type {content_type}"
    return None


@dataclass(frozen=True)
class LoadedAttachments:
    attachments: list[Attachment]
    infos: list[AttachmentInfo]
    versions: list[AttachmentVersion]  # what the sent log keeps, so that a resend attaches these files


def find_uploads(
    store: AttachmentStore,
    tenant_id: str,
    refs: Sequence[AttachmentRef],
    *,
    resending: bool,
    pinned: Sequence[AttachmentVersion] = (),
) -> list[StoredUpload]:
    """The company's uploads, in order, each the version that was sent when `pinned`; a foreign or unknown
    one is a 404, an expired one on resend 410, one changed since it was sent (and not versioned) 409."""
    found: list[StoredUpload] = []
    for index, ref in enumerate(refs):
        where = f"attachments[{index}].upload_id"
        sent = pinned[index] if index < len(pinned) else None
        upload = store.find(tenant_id, ref.upload_id, sent.version_id if sent else None)
        if upload is None and resending:
            # The sent log proves the file was there: it has expired (AttachmentRetentionDays).
            raise Gone(
                "An attachment of this email is no longer kept; upload it again and send a new email.",
                errors=[FieldError(where, "expired")],
            )
        if upload is None:
            raise NotFound(
                f"No upload {ref.upload_id} for this company.",
                errors=[FieldError(where, "unknown upload")],
            )
        if sent and not sent.version_id and sent.etag and upload.etag != sent.etag:
            raise Conflict(
                f"The file {upload.filename} was changed after this email was sent, so it is not resent; "
                "upload it again and send a new email.",
                errors=[FieldError(where, "changed since it was sent")],
            )
        found.append(upload)
    return found


def check_size(
    store: AttachmentStore, upload: StoredUpload, where: str, max_bytes: int, *, resending: bool
) -> None:
    """A file of another size than it was declared with (S3 signs the length, but a store that does not
    check signatures would take any), or over the limit, is refused and deleted. A resend of an email
    sent before sizes were recorded checks the limit only."""
    undeclared = upload.declared_size is None and not resending
    differs = upload.declared_size is not None and upload.size != upload.declared_size
    if not (undeclared or differs or upload.size > max_bytes):
        return
    with contextlib.suppress(ServiceUnavailable):  # the bucket's lifecycle rule removes it in any case
        store.delete(upload)
    declared = "no size" if upload.declared_size is None else f"{upload.declared_size} bytes"
    raise PayloadTooLarge(
        f"The file {upload.filename} is {upload.size} bytes, but was declared with {declared} "
        f"(the limit is {max_bytes} bytes); it has been deleted. Upload it again.",
        errors=[FieldError(where, "not the size it was declared with, or over the attachment limit")],
    )


def check_total(uploads: Sequence[StoredUpload], max_bytes: int) -> None:
    total = sum(upload.size for upload in uploads)
    if total > max_bytes:
        raise PayloadTooLarge(
            f"The attachments total {total} bytes; the limit is {max_bytes}.",
            errors=[FieldError("attachments", "over the attachment limit")],
        )


def check_pdf(content: bytes, filename: str, where: str) -> None:
    if b"%%EOF" not in content[-_PDF_END_WINDOW:]:
        raise InvalidInput.on(where, f"{filename} is not a complete PDF file (it does not end with %%EOF)")
    start = content[:_HTML_WINDOW].lower()
    if any(marker in start for marker in _HTML_MARKERS):
        raise InvalidInput.on(where, f"{filename} holds HTML: it is not a real application/pdf file")


def read_checked(store: AttachmentStore, upload: StoredUpload, where: str) -> Attachment:
    """The file's bytes, refused when gone, empty, of a type we do not attach, named as another type, or
    not what it claims."""
    read = store.read(upload)
    if read is None:
        raise Gone(
            f"The file {upload.filename} is no longer kept; upload it again.",
            errors=[FieldError(where, "expired")],
        )
    content, content_type = read
    if len(content) != upload.size:
        raise Conflict(
            f"The file {upload.filename} changed while it was read; send again.",
            errors=[FieldError(where, "changed while read")],
        )
    if not content:
        raise InvalidInput.on(where, f"{upload.filename} is empty")
    if content_type not in ALLOWED_UPLOADS:
        raise InvalidInput.on(where, f"{upload.filename} has a type that cannot be attached ({content_type})")
    problem = filename_problem(upload.filename, content_type)
    if problem:
        raise InvalidInput.on(where, f"{upload.filename} is stored as {content_type}: its name {problem}")
    signatures = ALLOWED_UPLOADS[content_type]
    if signatures and not content.startswith(signatures):
        raise InvalidInput.on(where, f"{upload.filename} is not a real {content_type} file")
    if content_type == "application/pdf":
        check_pdf(content, upload.filename, where)
    return Attachment(upload.filename, content, content_type)


def load_attachments(
    store: AttachmentStore,
    tenant_id: str,
    refs: Sequence[AttachmentRef],
    max_bytes: int,
    *,
    resending: bool,
    pinned: Sequence[AttachmentVersion] = (),
) -> LoadedAttachments:
    """Every check passes before a single byte is sent: ownership (and on resend, the very version that
    was sent), each size, the total size, then each file."""
    uploads = find_uploads(store, tenant_id, refs, resending=resending, pinned=pinned)
    for index, upload in enumerate(uploads):
        check_size(store, upload, f"attachments[{index}].upload_id", max_bytes, resending=resending)
    check_total(uploads, max_bytes)
    attachments = [read_checked(store, u, f"attachments[{i}].upload_id") for i, u in enumerate(uploads)]
    return LoadedAttachments(
        attachments=attachments,
        infos=[AttachmentInfo(filename=a.filename, size=len(a.content)) for a in attachments],
        versions=[AttachmentVersion(version_id=u.version_id, etag=u.etag) for u in uploads],
    )


def check_attachments(
    store: AttachmentStore, tenant_id: str, refs: Sequence[AttachmentRef], max_bytes: int
) -> tuple[list[AttachmentInfo], list[AttachmentVersion]]:
    """What a queued email will attach, checked now without reading the files: ownership, each
    size, the total; the versions found are the ones the worker sends (a file changed or gone by
    then fails the email). The content checks happen when the worker reads them."""
    uploads = find_uploads(store, tenant_id, refs, resending=False)
    for index, upload in enumerate(uploads):
        check_size(store, upload, f"attachments[{index}].upload_id", max_bytes, resending=False)
    check_total(uploads, max_bytes)
    infos = [AttachmentInfo(filename=u.filename, size=u.size) for u in uploads]
    return infos, [AttachmentVersion(version_id=u.version_id, etag=u.etag) for u in uploads]
