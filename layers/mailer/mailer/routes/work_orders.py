"""/work-orders/{id}: work orders synced by the business application, their status changes, and a
reminder sent on request."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from mailer.api import CurrentCaller, problem_responses
from mailer.idempotency import idempotent
from mailer.observability import metrics
from mailer.routes import Wired
from mailer.sent_log.models import SentLogEntry
from mailer.work_orders.models import StatusChange, StatusChangeResult, WorkOrder, WorkOrderInput

router = Router()
WorkOrderPathId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


@router.put(
    "/work-orders/<work_order_id>",
    summary="Create or update a work order",
    tags=["work orders"],
    operation_id="putWorkOrder",
    responses=problem_responses(),
)
def put_work_order(
    work_order_id: WorkOrderPathId, body: WorkOrderInput, caller: CurrentCaller, svc: Wired
) -> WorkOrder:
    return svc.work_order_sync.save(caller, work_order_id, body)


@router.get(
    "/work-orders/<work_order_id>",
    summary="Read a work order",
    tags=["work orders"],
    operation_id="getWorkOrder",
    responses=problem_responses(404),
)
def get_work_order(work_order_id: WorkOrderPathId, caller: CurrentCaller, svc: Wired) -> WorkOrder:
    return svc.work_order_sync.get(caller, work_order_id)


@router.post(
    "/work-orders/<work_order_id>/status",
    summary="Change a work order's status",
    tags=["work orders"],
    operation_id="changeWorkOrderStatus",
    responses=problem_responses(404),
)
def change_status(
    work_order_id: WorkOrderPathId, body: StatusChange, caller: CurrentCaller, svc: Wired
) -> StatusChangeResult:
    result = svc.status_changes.change(caller, work_order_id, body)
    if result.email.queued:
        metrics.add_metric(name="AutomatedEmailQueued", unit="Count", value=1)
    return result


@router.post(
    "/work-orders/<work_order_id>/remind",
    summary="Send the work order's reminder now, with the reminder automation's wording",
    tags=["work orders"],
    operation_id="remindWorkOrder",
    responses=problem_responses(404, 409, 429, 502),
)
@idempotent
def remind_work_order(work_order_id: WorkOrderPathId, caller: CurrentCaller, svc: Wired) -> SentLogEntry:
    entry = svc.work_order_reminders.remind(caller, work_order_id)
    metrics.add_metric(name="WorkOrderReminderSent", unit="Count", value=1)
    return entry
