"""Bounce reader function: delivery status notifications read over IMAP from the sending mailboxes."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer.observability import logger, metrics, tracer
from mailer.services import boot

services = boot()


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    counts = services().bounce_reader.run()
    metrics.add_metric(name="BounceReportsRecorded", unit="Count", value=counts["recorded"])
    metrics.add_metric(name="MailboxReadsFailed", unit="Count", value=counts["failed"])
    return counts
