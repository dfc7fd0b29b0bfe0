"""/documents/*: uploads, previews and document email with its attachments."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from pydantic import ValidationError

from mailer.api import CurrentCaller, problem_of, problem_responses
from mailer.documents.models import (
    DocumentEmailBatch,
    DocumentEmailRequest,
    DocumentPreviewRequest,
    QueuedBatch,
    QueuedItem,
    Rendered,
    UploadRequest,
    UploadTicket,
)
from mailer.errors import MailerError
from mailer.idempotency import Accepted, idempotent
from mailer.identity import Caller
from mailer.observability import metrics
from mailer.routes import Wired
from mailer.sent_log.models import SentLogEntry
from mailer.services import Services

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
    responses=problem_responses(404, 409, 410, 413, 429, 502, 503)
    | {
        202: {
            "description": "Queued (`queue: true`): the `queued` entry; the worker sends it",
            "content": {"application/json": {"model": SentLogEntry}},
        }
    },
)
@idempotent
def send_document(body: DocumentEmailRequest, caller: CurrentCaller, svc: Wired) -> SentLogEntry:
    if body.queue:  # 202 with the queued entry; the outbox worker sends it
        queued = svc.documents.queue(caller, body)
        metrics.add_metric(name="DocumentEmailQueued", unit="Count", value=1)
        return Accepted(queued)  # type: ignore[return-value]  # answered 202 by @idempotent
    entry = svc.documents.send(caller, body)
    metrics.add_metric(name="DocumentEmailSent", unit="Count", value=1)
    return entry


@router.post(
    "/documents/email/batch",
    summary="Queue up to 100 document emails; each item is checked and queued on its own",
    tags=["documents"],
    operation_id="queueDocuments",
    responses={
        202: {
            "description": "Each item queued or its own problem",
            "content": {"application/json": {"model": QueuedBatch}},
        }
    }
    | problem_responses(success=None),
)
def queue_documents(body: DocumentEmailBatch, caller: CurrentCaller, svc: Wired) -> Response[dict[str, Any]]:
    answers = [_queued(svc, caller, index, item) for index, item in enumerate(body.items)]
    metrics.add_metric(
        name="DocumentEmailQueued", unit="Count", value=sum(a.status == "queued" for a in answers)
    )
    batch = QueuedBatch(items=answers)
    return Response(status_code=202, content_type="application/json", body=batch.model_dump(mode="json"))


def _queued(svc: Services, caller: Caller, index: int, item: dict[str, Any]) -> QueuedItem:
    try:
        entry = svc.documents.queue(caller, DocumentEmailRequest.model_validate(item))
    except ValidationError as exc:
        return QueuedItem(error=problem_of(RequestValidationError(exc.errors()), f"items[{index}]"))
    except MailerError as exc:
        return QueuedItem(error=problem_of(exc, f"items[{index}]"))
    return QueuedItem(email_id=entry.id, status="queued")
