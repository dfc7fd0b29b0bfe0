"""The company planner: one company's daily run per plan queue message, reporting partial batch
failures so that only the companies whose planning failed come back."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer.automations.tick import PlanCompany
from mailer.observability import logger, metrics, tracer
from mailer.services import boot

services = boot("work_orders_table", "invoices_table", "ledger_table", "outbox_queue_url")
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def plan(record: SQSRecord) -> dict[str, int]:
    queued = services().company_run.run(PlanCompany.model_validate_json(record.body))
    metrics.add_metric(name="EmailsPlanned", unit="Count", value=sum(queued.values()))
    return queued


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=plan, processor=processor, context=context)
