"""Tracking function: SES events from EventBridge (the stack's configuration set) onto the sent log."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer.observability import logger, metrics, tracer
from mailer.services import boot

services = boot()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, str]:
    outcome = services().tracking.record_ses(event)
    metrics.add_metric(name=f"DeliveryEvent_{outcome}", unit="Count", value=1)
    return {"outcome": outcome}
