"""The outbox: automated emails waiting on SQS for the worker."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ConfigDict

from mailer import aws_clients
from mailer.automations import AutomationType
from mailer.errors import ServiceUnavailable

BATCH = 10  # SendMessageBatch takes ten at a time


class OutboxMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str
    automation: AutomationType
    work_order_id: str
    occurrence: str  # the reminder's start date, or the status change's id

    @property
    def ledger_key(self) -> tuple[str, str, str, str]:
        return self.tenant_id, self.automation, self.work_order_id, self.occurrence


class OutboxQueue:
    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url

    @property
    def _sqs(self) -> Any:
        return aws_clients.client("sqs")

    def send(self, messages: list[OutboxMessage]) -> list[OutboxMessage]:
        """Send in batches of ten; returns the messages SQS did not take."""
        failed: list[OutboxMessage] = []
        for start in range(0, len(messages), BATCH):
            chunk = messages[start : start + BATCH]
            entries = [{"Id": str(i), "MessageBody": m.model_dump_json()} for i, m in enumerate(chunk)]
            try:
                response = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (ClientError, BotoCoreError):
                failed.extend(chunk)
                continue
            failed.extend(chunk[int(f["Id"])] for f in response.get("Failed", []))
        return failed

    def send_one(self, message: OutboxMessage) -> None:
        if self.send([message]):
            raise ServiceUnavailable("The email could not be queued; try again.")
