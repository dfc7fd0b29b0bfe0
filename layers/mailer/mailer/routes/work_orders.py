"""/work-orders/{id}: work orders synced by the business application, and their status changes."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from mailer.api import CurrentCaller, problem_responses
from mailer.observability import metrics
from mailer.routes import Wired
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
