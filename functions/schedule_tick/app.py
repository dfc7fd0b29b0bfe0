"""The schedule tick, every 15 minutes: queue a plan of each company whose daily run has come."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer.observability import logger, metrics, tracer
from mailer.services import boot

services = boot("plan_queue_url")


def scheduled_time(event: dict[str, Any]) -> datetime:
    """The tick's own time (`<aws.scheduler.scheduled-time>`, in the schedule's input), so a late
    invocation plans the slot it was for; the clock when the event has none (an invoke by hand)."""
    given = event.get("scheduled_time") if isinstance(event, dict) else None
    if isinstance(given, str):
        try:
            return datetime.fromisoformat(given.replace("Z", "+00:00")).astimezone(UTC)
        except ValueError:
            logger.warning("scheduled_time unreadable; the clock is used", extra={"scheduled_time": given})
    return datetime.now(UTC)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    result = services().schedule_tick.tick(scheduled_time(event))
    metrics.add_metric(name="CompaniesDue", unit="Count", value=result["companies"])
    return result
