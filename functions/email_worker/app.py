"""The outbox worker: sends queued automated email, reporting partial batch failures to SQS."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer.automations.engine import OutboxWorker
from mailer.automations.outbox import OutboxMessage
from mailer.config import MailerConfig
from mailer.services import Services

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# Every record reported as failed is redelivered either way; no invocation error is needed for that.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@cache
def services() -> Services:
    return Services.from_config(MailerConfig.from_env(), logger)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    worker = OutboxWorker(services().automated)

    def handle(record: SQSRecord) -> str:
        message = OutboxMessage.model_validate_json(record.body)
        outcome = worker.handle(message, receive_count=int(record.attributes.approximate_receive_count or 1))
        logger.info("outbox message handled", extra={"outcome": outcome, "automation": message.automation})
        metrics.add_metric(
            name="AutomatedEmailSent" if outcome == "sent" else "AutomatedEmailNotSent", unit="Count", value=1
        )
        return outcome

    try:
        return process_partial_response(
            event=event, record_handler=handle, processor=processor, context=context
        )
    finally:
        worker.close()
