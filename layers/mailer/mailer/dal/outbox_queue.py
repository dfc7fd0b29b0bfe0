"""The outbox queue on SQS: messages (any pydantic model, sent as JSON) waiting for the worker."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from mailer.dal import clients
from mailer.errors import ServiceUnavailable

BATCH = 10  # SendMessageBatch takes ten at a time
MAX_DELAY_SECONDS = 900  # the longest delay SQS gives a message
M = TypeVar("M", bound=BaseModel)


class OutboxQueue:
    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url

    @property
    def _sqs(self) -> Any:
        return clients.client("sqs")

    def send(self, messages: Sequence[M], delay_seconds: int = 0) -> list[M]:
        """Send in batches of ten, each delivered after `delay_seconds` (at most 900, SQS's limit);
        returns the messages SQS did not take."""
        failed: list[M] = []
        delay = min(max(delay_seconds, 0), MAX_DELAY_SECONDS)
        for start in range(0, len(messages), BATCH):
            chunk = messages[start : start + BATCH]
            delayed = {"DelaySeconds": delay} if delay else {}
            entries = [
                {"Id": str(i), "MessageBody": m.model_dump_json()} | delayed for i, m in enumerate(chunk)
            ]
            try:
                response = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except (ClientError, BotoCoreError):
                failed.extend(chunk)
                continue
            failed.extend(chunk[int(f["Id"])] for f in response.get("Failed", []))
        return failed

    def send_one(self, message: BaseModel) -> None:
        if self.send([message]):
            raise ServiceUnavailable("The email could not be queued; try again.")
