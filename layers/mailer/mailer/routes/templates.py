"""/merge-fields and /document-templates/{type}: the wording companies give their mail."""

from __future__ import annotations

from aws_lambda_powertools.event_handler.api_gateway import Router
from pydantic import BaseModel

from mailer.api import CurrentCaller, problem_responses
from mailer.documents.models import DocumentTemplate, DocumentTemplateInput, DocumentType
from mailer.routes import Wired
from mailer.templating.fields import MERGE_FIELDS

router = Router()


class MergeField(BaseModel):
    number: int
    name: str
    description: str
    example: str


@router.get(
    "/merge-fields",
    summary="Merge fields templates may use",
    tags=["templates"],
    operation_id="listMergeFields",
    responses=problem_responses(),
)
def list_merge_fields(caller: CurrentCaller) -> list[MergeField]:
    return [MergeField.model_validate(f.public()) for f in MERGE_FIELDS]


@router.get(
    "/document-templates",
    summary="Document email wording for every document type",
    tags=["templates"],
    operation_id="listDocumentTemplates",
    responses=problem_responses(),
)
def list_document_templates(caller: CurrentCaller, svc: Wired) -> list[DocumentTemplate]:
    return svc.document_templates.list(caller.tenant_id)


@router.get(
    "/document-templates/<document_type>",
    summary="Document email wording for one type",
    tags=["templates"],
    operation_id="getDocumentTemplate",
    responses=problem_responses(),
)
def get_document_template(document_type: DocumentType, caller: CurrentCaller, svc: Wired) -> DocumentTemplate:
    return svc.document_templates.get(caller.tenant_id, document_type)


@router.put(
    "/document-templates/<document_type>",
    summary="Change the document email wording (admin)",
    tags=["templates"],
    operation_id="putDocumentTemplate",
    responses=problem_responses(),
)
def put_document_template(
    document_type: DocumentType, body: DocumentTemplateInput, caller: CurrentCaller, svc: Wired
) -> DocumentTemplate:
    return svc.document_templates.save(caller, document_type, body)


@router.delete(
    "/document-templates/<document_type>",
    summary="Go back to the default wording (admin)",
    tags=["templates"],
    operation_id="resetDocumentTemplate",
    responses=problem_responses(),
)
def reset_document_template(
    document_type: DocumentType, caller: CurrentCaller, svc: Wired
) -> DocumentTemplate:
    return svc.document_templates.reset(caller, document_type)
