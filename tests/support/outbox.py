"""The outbox queue (moto SQS) fed to EmailWorkerFunction's handler as Lambda feeds it.

Records are received from the queue, handed to the handler as an SQS event, and deleted unless
reported in batchItemFailures; a reported one is made visible again for the redelivery.
"""

from __future__ import annotations

from typing import Any

import boto3

from local.events import FakeContext, sqs_event
from local.template import Template
from tests.support.api import load_function


class Outbox:
    """Feeds the queue to the worker handler as Lambda does. A fresh worker container to begin with;
    `close()` leaves none warm (its cached password) for the next test."""

    def __init__(
        self,
        aws: boto3.Session,
        template: Template,
        queue: str = "OutboxQueue",
        function: str = "EmailWorkerFunction",
    ) -> None:
        self.sqs = aws.client("sqs")
        self.url = template.names.ref(queue)
        self.queue_arn = f"arn:aws:sqs:us-east-1:123456789012:local-{queue}"
        self.worker = load_function(template, function)
        self.worker.services.cache_clear()  # a fresh container for each test

    def close(self) -> None:
        self.worker.services.cache_clear()

    def receive(self) -> list[dict[str, Any]]:
        messages = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, AttributeNames=["All"], VisibilityTimeout=0
            ).get("Messages", [])
            if not batch:
                return messages
            messages.extend(batch)
            for m in batch:  # hide them until we decide, as a Lambda poller would
                self.sqs.change_message_visibility(
                    QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=300
                )

    def event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        return sqs_event(messages, self.queue_arn)

    def invoke(self, messages: list[dict[str, Any]]) -> list[str]:
        """One invocation with these records; returns the ids reported as failed."""
        response = self.worker.lambda_handler(self.event(messages), FakeContext())
        failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        for m in messages:
            if m["MessageId"] in failed:
                self.sqs.change_message_visibility(
                    QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=m["ReceiptHandle"])
        return failed

    def drain(self) -> list[str]:
        """Every waiting message, ten a batch; returns the ids reported as failed."""
        failed: list[str] = []
        messages = self.receive()
        for start in range(0, len(messages), 10):
            failed += self.invoke(messages[start : start + 10])
        return failed
