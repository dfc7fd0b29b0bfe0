"""/statements and /customers/{id}/statement: the company's statement schedule, its preview and its
run on demand, and a customer's statement sent now."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from mailer.api import CurrentCaller, problem_responses
from mailer.automations.models import Preview, ReminderRun, ReminderRunResult
from mailer.billing.models import RECORD_ID
from mailer.billing.previews import StatementPreviewRequest
from mailer.billing.statement_models import StatementSchedule, StatementScheduleInput
from mailer.idempotency import idempotent
from mailer.observability import metrics
from mailer.routes import Wired
from mailer.sent_log.models import SentLogEntry

router = Router()
CustomerPathId = Annotated[str, Path(pattern=RECORD_ID)]


@router.get(
    "/statements/schedule",
    summary="The statement schedule",
    tags=["statements"],
    operation_id="getStatementSchedule",
    responses=problem_responses(),
)
def get_schedule(caller: CurrentCaller, svc: Wired) -> StatementSchedule:
    return svc.statement_schedule.get(caller.tenant_id)


@router.put(
    "/statements/schedule",
    summary="Change the statement schedule (admin)",
    tags=["statements"],
    operation_id="putStatementSchedule",
    responses=problem_responses(),
)
def put_schedule(body: StatementScheduleInput, caller: CurrentCaller, svc: Wired) -> StatementSchedule:
    return svc.statement_schedule.save(caller, body)


@router.post(
    "/statements/preview",
    summary="Render the statement with a customer's open invoices or sample data",
    tags=["statements"],
    operation_id="previewStatement",
    responses=problem_responses(404, 409),
)
def preview_statement(body: StatementPreviewRequest, caller: CurrentCaller, svc: Wired) -> Preview:
    rendered = svc.billing_previews.statement(caller, body.customer_id)
    return Preview.model_validate(rendered.model_dump())


@router.post(
    "/statements/run",
    summary="Run the statements of a day now (admin)",
    tags=["statements"],
    operation_id="runStatements",
    responses=problem_responses(),
)
def run_statements(body: ReminderRun, caller: CurrentCaller, svc: Wired) -> ReminderRunResult:
    return ReminderRunResult(queued=svc.statement_planner.run_for(caller, body.date))


@router.post(
    "/customers/<customer_id>/statement",
    summary="Send the customer's statement now",
    tags=["statements"],
    operation_id="sendCustomerStatement",
    responses=problem_responses(404, 409, 410, 413, 429, 502),
)
@idempotent
def send_statement(customer_id: CustomerPathId, caller: CurrentCaller, svc: Wired) -> SentLogEntry:
    entry = svc.statements.send(caller, customer_id)
    metrics.add_metric(name="StatementSent", unit="Count", value=1)
    return entry
