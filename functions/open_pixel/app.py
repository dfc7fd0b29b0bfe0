"""Open pixel function: GET /t/{token}.gif, public; the same GIF for every token, valid or not."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer.api import http_app
from mailer.observability import logger, metrics, tracer
from mailer.routes import tracking
from mailer.services import boot

services = boot("tracking_key_secret")
app = http_app(tracking.router, logger=logger, services=services)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
