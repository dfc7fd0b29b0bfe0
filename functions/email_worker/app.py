"""The outbox worker: sends queued automated email, reporting partial batch failures to SQS."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer.automations.outbox import OutboxMessage
from mailer.automations.worker import Outcome
from mailer.observability import logger, metrics, tracer
from mailer.services import boot

services = boot("work_orders_table", "ledger_table")
# Every record reported as failed is redelivered either way; no invocation error is needed for that.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    worker = services().worker()

    def handle(record: SQSRecord) -> str:
        message = OutboxMessage.model_validate_json(record.body)
        handled = worker.handle(message, receive_count=int(record.attributes.approximate_receive_count or 1))
        logger.info(
            "outbox message handled", extra={"outcome": str(handled), "automation": message.automation}
        )
        sent = handled.outcome is Outcome.SENT
        metrics.add_metric(
            name="AutomatedEmailSent" if sent else "AutomatedEmailNotSent", unit="Count", value=1
        )
        return str(handled)

    try:
        return process_partial_response(
            event=event, record_handler=handle, processor=processor, context=context
        )
    finally:
        worker.close()
