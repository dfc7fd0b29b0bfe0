"""Document email function: uploads, sending with the PDF attached, the sent log and resend, and the
document events whose confirmations it queues."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer import idempotency
from mailer.api import http_app
from mailer.observability import logger, metrics, tracer
from mailer.routes import document_events, documents, sent_log
from mailer.services import boot

services = boot("attachments_bucket", "idempotency_table", "outbox_queue_url")
app = http_app(
    documents.router, document_events.raise_router, sent_log.router, logger=logger, services=services
)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency.register_lambda_context(context)  # a crashed send holds its key until this times out
    return app.resolve(event, context)
