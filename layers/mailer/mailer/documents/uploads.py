"""Uploads: a presigned address to put an attachment under the company's prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.documents.models import UploadRequest, UploadTicket
from mailer.errors import FieldError, InvalidInput, PayloadTooLarge
from mailer.identity import Caller
from mailer.ids import new_id

_UNSAFE_FILENAME = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|]')


@dataclass
class Uploads:
    attachments: AttachmentStore
    config: MailerConfig

    def create(self, caller: Caller, request: UploadRequest) -> UploadTicket:
        if _UNSAFE_FILENAME.search(request.filename) or request.filename.startswith("."):
            raise InvalidInput.on("filename", "must be a plain file name (no path, no control characters)")
        if request.size == 0:
            raise InvalidInput.on("size", "the file is empty")
        limit = self.config.attachment_max_bytes
        if request.size > limit:
            raise PayloadTooLarge(
                f"The file is {request.size} bytes; the limit is {limit} bytes.",
                errors=[FieldError("size", "over the attachment limit")],
            )
        upload_id = new_id()
        presigned = self.attachments.presign_upload(
            caller.tenant_id, upload_id, request.filename, request.content_type
        )
        return UploadTicket(
            upload_id=upload_id,
            url=presigned.url,
            headers=presigned.headers,
            expires_at=presigned.expires_at,
            max_size=limit,
        )
