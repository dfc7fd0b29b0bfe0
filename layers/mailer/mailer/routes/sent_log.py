"""/emails: the sent log, newest first, one entry, and resend."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from mailer.api import CurrentCaller, problem_responses
from mailer.documents.models import DocumentType
from mailer.idempotency import idempotent
from mailer.observability import metrics
from mailer.routes import Wired
from mailer.sent_log.models import EmailPage, EntryStatus, SentLogEntry
from mailer.tracking.models import DeliveryStatus

router = Router()
EmailId = Annotated[str, Path(min_length=1, max_length=64)]


@router.get(
    "/emails",
    summary="The sent log, newest first",
    tags=["sent log"],
    operation_id="listEmails",
    responses=problem_responses(),
)
def list_emails(
    caller: CurrentCaller,
    svc: Wired,
    document_type: Annotated[DocumentType | None, Query()] = None,
    document_number: Annotated[str | None, Query(max_length=64)] = None,
    work_order_id: Annotated[str | None, Query(max_length=64)] = None,
    delivery_status: Annotated[DeliveryStatus | None, Query()] = None,
    status: Annotated[EntryStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> EmailPage:
    return svc.sent_log_queries.list(
        caller,
        document_type,
        document_number,
        work_order_id,
        delivery_status=delivery_status,
        status=status,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/emails/<email_id>",
    summary="One sent-log entry",
    tags=["sent log"],
    operation_id="getEmail",
    responses=problem_responses(404),
)
def get_email(email_id: EmailId, caller: CurrentCaller, svc: Wired) -> SentLogEntry:
    return svc.sent_log_queries.get(caller, email_id)


@router.post(
    "/emails/<email_id>/resend",
    summary="Send a logged document email again",
    tags=["sent log"],
    operation_id="resendEmail",
    responses=problem_responses(404, 409, 410, 413, 429, 502),
)
@idempotent
def resend(email_id: EmailId, caller: CurrentCaller, svc: Wired) -> SentLogEntry:
    entry = svc.documents.resend(caller, email_id)
    metrics.add_metric(name="DocumentEmailResent", unit="Count", value=1)
    return entry
