"""/invoices, /customers/{id}/invoices and /invoice-reminders: invoices synced by the business
application, a reminder of one sent on request, and the rules that remind customers of them."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from mailer.api import JSON, CurrentCaller, problem_responses
from mailer.automations.models import Preview, ReminderRun, ReminderRunResult
from mailer.billing.models import RECORD_ID, InvoiceInput, InvoiceList, InvoiceStatus, InvoiceView
from mailer.billing.previews import ReminderPreviewRequest
from mailer.billing.remind import RemindRequest
from mailer.billing.rules import RULE_ID, ReminderRule, ReminderRuleInput
from mailer.idempotency import idempotent
from mailer.observability import metrics
from mailer.routes import Wired
from mailer.sent_log.models import SentLogEntry

router = Router()
InvoicePathId = Annotated[str, Path(pattern=RECORD_ID)]
CustomerPathId = Annotated[str, Path(pattern=RECORD_ID)]
RulePathId = Annotated[str, Path(pattern=RULE_ID)]


@router.put(
    "/invoices/<invoice_id>",
    summary="Create or update an invoice",
    tags=["invoices"],
    operation_id="putInvoice",
    responses=problem_responses(),
)
def put_invoice(
    invoice_id: InvoicePathId, body: InvoiceInput, caller: CurrentCaller, svc: Wired
) -> InvoiceView:
    return svc.invoice_sync.save(caller, invoice_id, body)


@router.get(
    "/invoices/<invoice_id>",
    summary="Read an invoice",
    tags=["invoices"],
    operation_id="getInvoice",
    responses=problem_responses(404),
)
def get_invoice(invoice_id: InvoicePathId, caller: CurrentCaller, svc: Wired) -> InvoiceView:
    return svc.invoice_sync.get(caller, invoice_id)


@router.post(
    "/invoices/<invoice_id>/remind",
    summary="Send a reminder of the invoice now, with a rule's wording (default: overdue)",
    tags=["invoices"],
    operation_id="remindInvoice",
    responses=problem_responses(404, 409, 410, 413, 429, 502),
)
@idempotent
def remind_invoice(
    invoice_id: InvoicePathId, body: RemindRequest, caller: CurrentCaller, svc: Wired
) -> SentLogEntry:
    entry = svc.invoice_reminders.remind(caller, invoice_id, body)
    metrics.add_metric(name="InvoiceReminderSent", unit="Count", value=1)
    return entry


@router.get(
    "/customers/<customer_id>/invoices",
    summary="A customer's invoices",
    tags=["invoices"],
    operation_id="listCustomerInvoices",
    responses=problem_responses(),
)
def list_customer_invoices(
    customer_id: CustomerPathId,
    caller: CurrentCaller,
    svc: Wired,
    status: Annotated[InvoiceStatus | None, Query(description="Only invoices in this status.")] = None,
) -> InvoiceList:
    return svc.invoice_sync.for_customer(caller, customer_id, status)


@router.get(
    "/invoice-reminders",
    summary="Invoice reminder rules",
    tags=["invoice reminders"],
    operation_id="listInvoiceRules",
    responses=problem_responses(),
)
def list_rules(caller: CurrentCaller, svc: Wired) -> list[ReminderRule]:
    return svc.invoice_rules.list(caller.tenant_id)


@router.post(
    "/invoice-reminders/run",
    summary="Run the daily invoice reminders of a day now (admin)",
    tags=["invoice reminders"],
    operation_id="runInvoiceReminders",
    responses=problem_responses(),
)
def run_invoice_reminders(body: ReminderRun, caller: CurrentCaller, svc: Wired) -> ReminderRunResult:
    return ReminderRunResult(queued=svc.invoice_planner.run_for(caller, body.date))


@router.post(
    "/invoice-reminders/<rule_id>/preview",
    summary="Render an invoice reminder rule with an invoice or sample data",
    tags=["invoice reminders"],
    operation_id="previewInvoiceRule",
    responses=problem_responses(404),
)
def preview_rule(
    rule_id: RulePathId, body: ReminderPreviewRequest, caller: CurrentCaller, svc: Wired
) -> Preview:
    rendered = svc.billing_previews.reminder(caller, rule_id, body.invoice_id)
    return Preview.model_validate(rendered.model_dump())


@router.get(
    "/invoice-reminders/<rule_id>",
    summary="One invoice reminder rule",
    tags=["invoice reminders"],
    operation_id="getInvoiceRule",
    responses=problem_responses(404),
)
def get_rule(rule_id: RulePathId, caller: CurrentCaller, svc: Wired) -> ReminderRule:
    return svc.invoice_rules.get(caller.tenant_id, rule_id)


@router.put(
    "/invoice-reminders/<rule_id>",
    summary="Create or change an invoice reminder rule (admin)",
    tags=["invoice reminders"],
    operation_id="putInvoiceRule",
    responses=problem_responses(409),
)
def put_rule(rule_id: RulePathId, body: ReminderRuleInput, caller: CurrentCaller, svc: Wired) -> ReminderRule:
    return svc.invoice_rules.save(caller, rule_id, body)


@router.delete(
    "/invoice-reminders/<rule_id>",
    summary="Delete an invoice reminder rule; a default one is reset (admin)",
    tags=["invoice reminders"],
    operation_id="deleteInvoiceRule",
    responses={
        200: {
            "description": "A default rule, back to its default",
            "content": {JSON: {"model": ReminderRule}},
        },
        204: {"description": "The company's own rule is deleted", "content": {}},
        **problem_responses(404, success=None),
    },
)
def delete_rule(rule_id: RulePathId, caller: CurrentCaller, svc: Wired) -> Response[str]:
    reset = svc.invoice_rules.delete(caller, rule_id)
    if reset is None:
        return Response(status_code=204, body="")
    return Response(status_code=200, content_type=JSON, body=reset.model_dump_json())
