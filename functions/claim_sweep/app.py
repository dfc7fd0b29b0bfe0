"""The claim sweep: automated email claimed but never recorded as sent or failed is reported once."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer.observability import logger, metrics, tracer
from mailer.services import boot

services = boot("work_orders_table", "ledger_table")


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    result = services().claim_sweep.run()
    metrics.add_metric(name="AutomatedEmailUnknown", unit="Count", value=result["marked"])
    return result
