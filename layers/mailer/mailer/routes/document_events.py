"""/document-automations/{event} (the wording of the confirmations sent on document events) and
POST /documents/events (the business application raises one).

An event's name holds a dot (`shipment.shipped`): Powertools' `<event>` matches it (its path
pattern takes the characters RFC 3986 leaves unreserved, the dot among them). The name is taken as
a plain string, so an unknown event is the service's 404, not a validation error.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path

from mailer.api import CurrentCaller, problem_responses
from mailer.documents.event_models import (
    EVENT_NAME_DESCRIPTION,
    DocumentAutomation,
    DocumentAutomationInput,
    DocumentEventPreviewRequest,
    DocumentEventRequest,
    DocumentEventResult,
)
from mailer.documents.models import Rendered
from mailer.idempotency import idempotent
from mailer.observability import metrics
from mailer.routes import Wired

# The settings function serves the wording; the document email function the raise.
router = Router()
raise_router = Router()
EventName = Annotated[str, Path(max_length=64, description=EVENT_NAME_DESCRIPTION)]


@router.get(
    "/document-automations",
    summary="The confirmations sent on document events",
    tags=["document events"],
    operation_id="listDocumentAutomations",
    responses=problem_responses(),
)
def list_document_automations(caller: CurrentCaller, svc: Wired) -> list[DocumentAutomation]:
    return svc.document_automations.list(caller.tenant_id)


@router.get(
    "/document-automations/<event>",
    summary="The confirmation sent on one document event",
    tags=["document events"],
    operation_id="getDocumentAutomation",
    responses=problem_responses(404),
)
def get_document_automation(event: EventName, caller: CurrentCaller, svc: Wired) -> DocumentAutomation:
    return svc.document_automations.get(caller.tenant_id, event)


@router.put(
    "/document-automations/<event>",
    summary="Change the confirmation sent on a document event (admin)",
    tags=["document events"],
    operation_id="putDocumentAutomation",
    responses=problem_responses(404),
)
def put_document_automation(
    event: EventName, body: DocumentAutomationInput, caller: CurrentCaller, svc: Wired
) -> DocumentAutomation:
    return svc.document_automations.save(caller, event, body)


@router.post(
    "/document-automations/<event>/preview",
    summary="Render a document event's confirmation with a document or sample data",
    tags=["document events"],
    operation_id="previewDocumentAutomation",
    responses=problem_responses(404),
)
def preview_document_automation(
    event: EventName, body: DocumentEventPreviewRequest, caller: CurrentCaller, svc: Wired
) -> Rendered:
    return svc.document_automations.preview(caller, event, body.document)


@raise_router.post(
    "/documents/events",
    summary="Raise a document event: its confirmation is queued when active",
    tags=["document events"],
    operation_id="raiseDocumentEvent",
    responses=problem_responses(404, 409, 413),
)
@idempotent
def raise_document_event(
    body: DocumentEventRequest, caller: CurrentCaller, svc: Wired
) -> DocumentEventResult:
    result = svc.document_events.raise_event(caller, body)
    if result.queued:
        metrics.add_metric(name="DocumentEventQueued", unit="Count", value=1)
    return result
