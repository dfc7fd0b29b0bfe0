"""/automations/{type}: automated email settings and previews, and the reminder run on demand."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router

from mailer.api import CurrentCaller, problem_responses
from mailer.automations.models import (
    Automation,
    AutomationInput,
    AutomationType,
    Preview,
    PreviewRequest,
    ReminderRun,
    ReminderRunResult,
)
from mailer.routes import Wired

router = Router()
# The reminder run is served by the work orders function, next to the status changes.
run_router = Router()


@router.get(
    "/automations",
    summary="Automated email settings",
    tags=["automations"],
    operation_id="listAutomations",
    responses=problem_responses(),
)
def list_automations(caller: CurrentCaller, svc: Wired) -> list[Automation]:
    return svc.automations.list(caller.tenant_id)


@router.get(
    "/automations/<automation_type>",
    summary="One automated email",
    tags=["automations"],
    operation_id="getAutomation",
    responses=problem_responses(),
)
def get_automation(automation_type: AutomationType, caller: CurrentCaller, svc: Wired) -> Automation:
    return svc.automations.get(caller.tenant_id, automation_type)


@router.put(
    "/automations/<automation_type>",
    summary="Change an automated email (admin)",
    tags=["automations"],
    operation_id="putAutomation",
    responses=problem_responses(),
)
def put_automation(
    automation_type: AutomationType, body: AutomationInput, caller: CurrentCaller, svc: Wired
) -> Automation:
    return svc.automations.save(caller, automation_type, body)


@router.post(
    "/automations/<automation_type>/preview",
    summary="Render an automated email with a work order or sample data",
    tags=["automations"],
    operation_id="previewAutomation",
    responses=problem_responses(404),
)
def preview_automation(
    automation_type: AutomationType, body: PreviewRequest, caller: CurrentCaller, svc: Wired
) -> Preview:
    return svc.composer.preview(caller, automation_type, body.work_order_id)


@run_router.post(
    "/automations/reminder/run",
    summary="Run the daily reminder run of a day now (admin)",
    tags=["automations"],
    operation_id="runReminders",
    responses=problem_responses(),
)
def run_reminders(body: ReminderRun, caller: CurrentCaller, svc: Wired) -> ReminderRunResult:
    return ReminderRunResult(queued=svc.planner.run_for(caller, body.date))
