"""Document email: uploads, sending with the PDF attached, the sent log and resend."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel

from mailer.api import current_caller, install_problem_handlers, problem_responses
from mailer.config import MailerConfig
from mailer.documents.models import DocumentEmailRequest, DocumentPreviewRequest, DocumentType
from mailer.documents.service import Rendered, UploadRequest, UploadTicket
from mailer.sent_log.models import SentLogEntry
from mailer.services import Services

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver(enable_validation=True)
install_problem_handlers(app, logger)

EmailId = Annotated[str, Path(min_length=1, max_length=64)]


class EmailPage(BaseModel):
    items: list[SentLogEntry]
    next_cursor: str | None = None


@cache
def services() -> Services:
    return Services.from_config(MailerConfig.from_env(), logger)


@app.post(
    "/documents/uploads",
    summary="Get an address to upload an attachment to",
    tags=["documents"],
    responses={
        201: {"description": "Upload address", "content": {"application/json": {"model": UploadTicket}}}
    }
    | problem_responses(413, success=None),
)
def create_upload(body: UploadRequest) -> Response[UploadTicket]:
    ticket = services().documents.create_upload(current_caller(app), body)
    return Response(status_code=201, content_type="application/json", body=ticket.model_dump(mode="json"))


@app.post(
    "/documents/preview",
    summary="Render the subject and body a document email would have",
    tags=["documents"],
    responses=problem_responses(409),
)
def preview(body: DocumentPreviewRequest) -> Rendered:
    return services().documents.render(current_caller(app), body)


@app.post(
    "/documents/email",
    summary="Email a document with its attachments",
    tags=["documents"],
    responses=problem_responses(404, 409, 410, 413, 502),
)
def send_document(body: DocumentEmailRequest) -> SentLogEntry:
    entry = services().documents.send(current_caller(app), body)
    metrics.add_metric(name="DocumentEmailSent", unit="Count", value=1)
    return entry


@app.get("/emails", summary="The sent log, newest first", tags=["sent log"], responses=problem_responses())
def list_emails(
    document_type: Annotated[DocumentType | None, Query()] = None,
    document_number: Annotated[str | None, Query(max_length=64)] = None,
    work_order_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> EmailPage:
    items, next_cursor = services().documents.list(
        current_caller(app), document_type, document_number, work_order_id, limit=limit, cursor=cursor
    )
    return EmailPage(items=items, next_cursor=next_cursor)


@app.get(
    "/emails/<email_id>", summary="One sent-log entry", tags=["sent log"], responses=problem_responses(404)
)
def get_email(email_id: EmailId) -> SentLogEntry:
    return services().documents.get(current_caller(app), email_id)


@app.post(
    "/emails/<email_id>/resend",
    summary="Send a logged document email again",
    tags=["sent log"],
    responses=problem_responses(404, 409, 410, 413, 502),
)
def resend(email_id: EmailId) -> SentLogEntry:
    entry = services().documents.resend(current_caller(app), email_id)
    metrics.add_metric(name="DocumentEmailResent", unit="Count", value=1)
    return entry


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
