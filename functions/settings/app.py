"""Settings function: /providers, /settings/{profile}, /merge-fields, /document-templates, /automations,
/document-automations."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer.api import http_app
from mailer.observability import logger, metrics, tracer
from mailer.routes import automations, document_events, settings, suppressions, templates
from mailer.services import boot

services = boot()
app = http_app(
    settings.router,
    templates.router,
    automations.router,
    document_events.router,
    suppressions.router,
    logger=logger,
    services=services,
)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
