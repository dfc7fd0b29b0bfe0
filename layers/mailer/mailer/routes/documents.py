"""/documents/*: uploads, previews and document email with its attachments."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from mailer.api import CurrentCaller, problem_responses
from mailer.documents.models import (
    DocumentEmailRequest,
    DocumentPreviewRequest,
    Rendered,
    UploadRequest,
    UploadTicket,
)
from mailer.idempotency import idempotent
from mailer.observability import metrics
from mailer.routes import Wired
from mailer.sent_log.models import SentLogEntry

router = Router()


@router.post(
    "/documents/uploads",
    summary="Get an address to upload an attachment to",
    tags=["documents"],
    operation_id="createUpload",
    responses={
        201: {"description": "Upload address", "content": {"application/json": {"model": UploadTicket}}}
    }
    | problem_responses(413, success=None),
)
def create_upload(body: UploadRequest, caller: CurrentCaller, svc: Wired) -> Response[dict[str, Any]]:
    ticket = svc.uploads.create(caller, body)
    return Response(status_code=201, content_type="application/json", body=ticket.model_dump(mode="json"))


@router.post(
    "/documents/preview",
    summary="Render the subject and body a document email would have",
    tags=["documents"],
    operation_id="previewDocument",
    responses=problem_responses(409),
)
def preview(body: DocumentPreviewRequest, caller: CurrentCaller, svc: Wired) -> Rendered:
    return svc.documents.render(caller, body)


@router.post(
    "/documents/email",
    summary="Email a document with its attachments",
    tags=["documents"],
    operation_id="sendDocument",
    responses=problem_responses(404, 409, 410, 413, 429, 502),
)
@idempotent
def send_document(body: DocumentEmailRequest, caller: CurrentCaller, svc: Wired) -> SentLogEntry:
    entry = svc.documents.send(caller, body)
    metrics.add_metric(name="DocumentEmailSent", unit="Count", value=1)
    return entry
