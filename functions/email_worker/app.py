"""The outbox worker: sends queued automated email, reporting partial batch failures to SQS.

The whole batch is handled at once (its AWS calls are made for the batch, not per record); the
Powertools BatchProcessor then reports each record as the worker settled it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailer.automations.outbox import OutboxMessage
from mailer.automations.worker import Outcome, Settled
from mailer.observability import logger, metrics, tracer
from mailer.services import boot

services = boot("work_orders_table", "ledger_table", "outbox_queue_url")
# Every record reported as failed is redelivered either way; no invocation error is needed for that.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

METRIC_OF = {
    Outcome.SENT: "AutomatedEmailSent",
    Outcome.FAILED: "AutomatedEmailFailed",
    Outcome.DEFERRED: "AutomatedEmailDeferred",
    Outcome.SKIPPED: "AutomatedEmailSkipped",
}


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    records = [SQSRecord(raw) for raw in event["Records"]]
    worker = services().worker(remaining_ms=context.get_remaining_time_in_millis)
    try:
        settled = worker.handle_records(
            [(r.body, int(r.attributes.approximate_receive_count or 1)) for r in records]
        )
    finally:
        worker.close()
    by_id = {record.message_id: outcome for record, outcome in zip(records, settled, strict=True)}
    count_by_automation(settled)

    def handle(record: SQSRecord) -> str:
        outcome = by_id[record.message_id]
        if outcome.retry is not None:
            raise outcome.retry  # reported as a batch item failure: SQS delivers the record again
        automation = getattr(outcome.message, "automation", None)
        logger.info(
            "outbox message handled", extra={"outcome": str(outcome.handled), "automation": automation}
        )
        return str(outcome.handled)

    return process_partial_response(event=event, record_handler=handle, processor=processor, context=context)


def count_by_automation(settled: Sequence[Settled]) -> None:
    """One EMF document per outcome and automation, with the batch's count. Dimensions added to the
    shared `metrics` would apply to every metric of its flush, so each automation's counts go out
    through `single_metric` with the `automation` dimension (and the shared default dimensions)."""
    counts = Counter(
        (METRIC_OF[s.handled.outcome], s.message.automation)
        for s in settled
        if isinstance(s.message, OutboxMessage) and s.handled.outcome in METRIC_OF
    )
    for (name, automation), count in sorted(counts.items()):
        with single_metric(
            name=name,
            unit=MetricUnit.Count,
            value=count,
            namespace=metrics.namespace,
            default_dimensions=metrics.default_dimensions,
        ) as metric:
            metric.add_dimension(name="automation", value=automation)
