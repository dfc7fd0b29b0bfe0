"""Work orders synced by the business application, status changes, and the reminder run on demand."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict

from mailer.api import current_caller, install_problem_handlers, problem_responses
from mailer.config import MailerConfig
from mailer.errors import Forbidden, NotFound
from mailer.ids import utc_now
from mailer.services import Services
from mailer.work_orders.models import StatusChange, WorkOrder, WorkOrderInput

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver(enable_validation=True)
install_problem_handlers(app, logger)

WorkOrderPathId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class EmailDecision(BaseModel):
    queued: bool
    reason: str | None = None
    automation: str | None = None


class StatusChangeResult(BaseModel):
    work_order: WorkOrder
    email: EmailDecision


class ReminderRun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    date: dt.date | None = None


class ReminderRunResult(BaseModel):
    queued: int


@cache
def services() -> Services:
    return Services.from_config(MailerConfig.from_env(), logger)


@app.put(
    "/work-orders/<work_order_id>",
    summary="Create or update a work order",
    tags=["work orders"],
    responses=problem_responses(),
)
def put_work_order(work_order_id: WorkOrderPathId, body: WorkOrderInput) -> WorkOrder:
    caller = current_caller(app)
    work_order = WorkOrder.model_validate(body.model_dump() | {"id": work_order_id, "updated_at": utc_now()})
    services().work_orders.put(caller.tenant_id, work_order)
    return work_order


@app.get(
    "/work-orders/<work_order_id>",
    summary="Read a work order",
    tags=["work orders"],
    responses=problem_responses(404),
)
def get_work_order(work_order_id: WorkOrderPathId) -> WorkOrder:
    work_order = services().work_orders.get(current_caller(app).tenant_id, work_order_id)
    if work_order is None:
        raise NotFound(f"No work order {work_order_id}.")
    return work_order


@app.post(
    "/work-orders/<work_order_id>/status",
    summary="Change a work order's status",
    tags=["work orders"],
    responses=problem_responses(404),
)
def change_status(work_order_id: WorkOrderPathId, body: StatusChange) -> StatusChangeResult:
    work_order, email = services().automated.change_status(current_caller(app), work_order_id, body)
    if email["queued"]:
        metrics.add_metric(name="AutomatedEmailQueued", unit="Count", value=1)
    return StatusChangeResult(work_order=work_order, email=EmailDecision.model_validate(email))


@app.post(
    "/automations/reminder/run",
    summary="Run the noon reminder run now (admin)",
    tags=["automations"],
    responses=problem_responses(),
)
def run_reminders(body: ReminderRun) -> ReminderRunResult:
    caller = current_caller(app)
    if not caller.is_admin:
        raise Forbidden("Only an administrator can run the reminders.")
    return ReminderRunResult(queued=services().automated.plan_reminders(caller.tenant_id, body.date))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
