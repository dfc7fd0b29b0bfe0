"""The noon run: for every tenant with an active reminder, queue the reminders that are due."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer.observability import logger, metrics, tracer
from mailer.services import boot

services = boot("work_orders_table", "ledger_table", "outbox_queue_url")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result = services().planner.plan_all_tenants()
    metrics.add_metric(name="RemindersQueued", unit="Count", value=result["queued"])
    return result
