"""Invoices function: invoice sync and reads, a reminder sent on request, the invoice reminder rules,
and customers' statements (the schedule, its preview and run, a statement sent now)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer import idempotency
from mailer.api import http_app
from mailer.observability import logger, metrics, tracer
from mailer.routes import invoices, statements
from mailer.services import boot

services = boot("invoices_table", "ledger_table", "attachments_bucket", "idempotency_table")
app = http_app(invoices.router, statements.router, logger=logger, services=services)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    idempotency.register_lambda_context(context)  # a crashed reminder holds its key until this times out
    return app.resolve(event, context)
