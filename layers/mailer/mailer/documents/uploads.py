"""Uploads: a presigned address to put an attachment under the company's prefix, for the declared size
and type only, under a name that is plain, visible and ends as its type."""

from __future__ import annotations

from dataclasses import dataclass

from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.documents.attachments import filename_problem
from mailer.documents.models import UploadRequest, UploadTicket
from mailer.errors import FieldError, InvalidInput, PayloadTooLarge
from mailer.identity import Caller
from mailer.ids import new_id


@dataclass
class Uploads:
    attachments: AttachmentStore
    config: MailerConfig

    def create(self, caller: Caller, request: UploadRequest) -> UploadTicket:
        problem = filename_problem(request.filename, request.content_type)
        if problem:
            raise InvalidInput.on("filename", problem)
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
            caller.tenant_id, upload_id, request.filename, request.content_type, request.size
        )
        return UploadTicket(
            upload_id=upload_id,
            url=presigned.url,
            headers=presigned.headers,
            expires_at=presigned.expires_at,
            max_size=limit,
        )
