"""Email settings API: /providers and /settings/{profile}."""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field

from mailer.api import current_caller, install_problem_handlers, problem_responses
from mailer.automations.models import Automation, AutomationInput, AutomationType
from mailer.config import MailerConfig
from mailer.delivery.providers import PROVIDERS
from mailer.documents.models import DocumentTemplate, DocumentTemplateInput, DocumentType
from mailer.errors import NotFound
from mailer.services import Services
from mailer.settings.models import Profile, SettingsInput, SettingsView
from mailer.templating.fields import MERGE_FIELDS

logger = Logger()
tracer = Tracer()
metrics = Metrics()
app = APIGatewayHttpResolver(enable_validation=True)
install_problem_handlers(app, logger)


@cache
def services() -> Services:
    return Services.from_config(MailerConfig.from_env())


@app.get("/providers", summary="Mail provider presets", tags=["settings"], responses=problem_responses())
def list_providers() -> list[dict[str, Any]]:
    current_caller(app)
    return [p.public() for p in PROVIDERS.values()]


@app.get(
    "/settings/<profile>", summary="Read email settings", tags=["settings"], responses=problem_responses(404)
)
def get_settings(profile: Profile) -> SettingsView:
    return services().settings.get(current_caller(app), profile)


@app.put(
    "/settings/<profile>", summary="Save email settings", tags=["settings"], responses=problem_responses(409)
)
def put_settings(profile: Profile, settings: SettingsInput) -> SettingsView:
    saved = services().settings.save(current_caller(app), profile, settings)
    metrics.add_metric(name="SettingsSaved", unit="Count", value=1)
    return saved


@app.delete(
    "/settings/<profile>",
    summary="Delete email settings and their password",
    tags=["settings"],
    responses={204: {"description": "Deleted", "content": {}}, **problem_responses(404, success=None)},
)
def delete_settings(profile: Profile) -> Response[None]:
    services().settings.delete(current_caller(app), profile)
    return Response(status_code=204, body="")


@app.get(
    "/merge-fields",
    summary="Merge fields templates may use",
    tags=["templates"],
    responses=problem_responses(),
)
def list_merge_fields() -> list[dict[str, Any]]:
    current_caller(app)
    return [f.public() for f in MERGE_FIELDS]


@app.get(
    "/document-templates",
    summary="Document email wording for every document type",
    tags=["templates"],
    responses=problem_responses(),
)
def list_document_templates() -> list[DocumentTemplate]:
    return services().document_templates.list(current_caller(app).tenant_id)


@app.get(
    "/document-templates/<document_type>",
    summary="Document email wording for one type",
    tags=["templates"],
    responses=problem_responses(),
)
def get_document_template(document_type: DocumentType) -> DocumentTemplate:
    return services().document_templates.get(current_caller(app).tenant_id, document_type)


@app.put(
    "/document-templates/<document_type>",
    summary="Change the document email wording (admin)",
    tags=["templates"],
    responses=problem_responses(),
)
def put_document_template(document_type: DocumentType, body: DocumentTemplateInput) -> DocumentTemplate:
    return services().document_templates.save(current_caller(app), document_type, body)


@app.delete(
    "/document-templates/<document_type>",
    summary="Go back to the default wording (admin)",
    tags=["templates"],
    responses=problem_responses(),
)
def reset_document_template(document_type: DocumentType) -> DocumentTemplate:
    return services().document_templates.reset(current_caller(app), document_type)


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    work_order_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")] | None = None


class Preview(BaseModel):
    subject: str
    html: str
    text: str


@app.get(
    "/automations", summary="Automated email settings", tags=["automations"], responses=problem_responses()
)
def list_automations() -> list[Automation]:
    return services().automations.list(current_caller(app).tenant_id)


@app.get(
    "/automations/<automation_type>",
    summary="One automated email",
    tags=["automations"],
    responses=problem_responses(),
)
def get_automation(automation_type: AutomationType) -> Automation:
    return services().automations.get(current_caller(app).tenant_id, automation_type)


@app.put(
    "/automations/<automation_type>",
    summary="Change an automated email (admin)",
    tags=["automations"],
    responses=problem_responses(),
)
def put_automation(automation_type: AutomationType, body: AutomationInput) -> Automation:
    return services().automations.save(current_caller(app), automation_type, body)


@app.post(
    "/automations/<automation_type>/preview",
    summary="Render an automated email with a work order or sample data",
    tags=["automations"],
    responses=problem_responses(404),
)
def preview_automation(automation_type: AutomationType, body: PreviewRequest) -> Preview:
    caller = current_caller(app)
    svc = services()
    work_order = None
    if body.work_order_id:
        work_order = svc.work_orders.get(caller.tenant_id, body.work_order_id)
        if work_order is None:
            raise NotFound(f"No work order {body.work_order_id}.")
    rendered = svc.automated.render(caller.tenant_id, automation_type, work_order)
    return Preview(subject=rendered.subject, html=rendered.html, text=rendered.text)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
