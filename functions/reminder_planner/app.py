"""The noon run: for every tenant with an active reminder, queue the reminders that are due."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer.config import MailerConfig
from mailer.services import Services

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def services() -> Services:
    return Services.from_config(MailerConfig.from_env(), logger)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = services().automated.plan_all_tenants()
    metrics.add_metric(name="RemindersQueued", unit="Count", value=result["queued"])
    return result
