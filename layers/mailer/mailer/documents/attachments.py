"""Attachment policy: an upload is attached only if it is the company's, within the size limit,
not empty, and really of the type it claims."""

from __future__ import annotations

from collections.abc import Sequence

from mailer.dal.attachments_bucket import AttachmentStore, StoredUpload
from mailer.delivery.message import Attachment
from mailer.documents.models import AttachmentRef
from mailer.errors import FieldError, Gone, InvalidInput, NotFound, PayloadTooLarge
from mailer.sent_log.models import AttachmentInfo

# Content types an upload may declare, with the bytes a real file of that type starts with.
ALLOWED_UPLOADS: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "text/csv": (),
    "text/plain": (),
}


def find_uploads(
    store: AttachmentStore, tenant_id: str, refs: Sequence[AttachmentRef], *, resending: bool
) -> list[StoredUpload]:
    """The company's uploads, in order; a foreign or unknown one is a 404, an expired one on resend 410."""
    found: list[StoredUpload] = []
    for index, ref in enumerate(refs):
        upload = store.find(tenant_id, ref.upload_id)
        if upload is None and resending:
            # The sent log proves the file was there: it has expired (AttachmentRetentionDays).
            raise Gone(
                "An attachment of this email is no longer kept; upload it again and send a new email.",
                errors=[FieldError(f"attachments[{index}].upload_id", "expired")],
            )
        if upload is None:
            raise NotFound(
                f"No upload {ref.upload_id} for this company.",
                errors=[FieldError(f"attachments[{index}].upload_id", "unknown upload")],
            )
        found.append(upload)
    return found


def check_total(uploads: Sequence[StoredUpload], max_bytes: int) -> None:
    total = sum(upload.size for upload in uploads)
    if total > max_bytes:
        raise PayloadTooLarge(
            f"The attachments total {total} bytes; the limit is {max_bytes}.",
            errors=[FieldError("attachments", "over the attachment limit")],
        )


def read_checked(store: AttachmentStore, upload: StoredUpload, where: str) -> Attachment:
    """The file's bytes, refused when gone, empty, of a type we do not attach, or not what it claims."""
    read = store.read(upload)
    if read is None:
        raise Gone(
            f"The file {upload.filename} is no longer kept; upload it again.",
            errors=[FieldError(where, "expired")],
        )
    content, content_type = read
    if not content:
        raise InvalidInput.on(where, f"{upload.filename} is empty")
    if content_type not in ALLOWED_UPLOADS:
        raise InvalidInput.on(where, f"{upload.filename} has a type that cannot be attached ({content_type})")
    signatures = ALLOWED_UPLOADS[content_type]
    if signatures and not content.startswith(signatures):
        raise InvalidInput.on(where, f"{upload.filename} is not a real {content_type} file")
    return Attachment(upload.filename, content, content_type)


def load_attachments(
    store: AttachmentStore, tenant_id: str, refs: Sequence[AttachmentRef], max_bytes: int, *, resending: bool
) -> tuple[list[Attachment], list[AttachmentInfo]]:
    """Every check passes before a single byte is sent: ownership, total size, then each file."""
    uploads = find_uploads(store, tenant_id, refs, resending=resending)
    check_total(uploads, max_bytes)
    attachments = [read_checked(store, u, f"attachments[{i}].upload_id") for i, u in enumerate(uploads)]
    infos = [AttachmentInfo(filename=a.filename, size=len(a.content)) for a in attachments]
    return attachments, infos
