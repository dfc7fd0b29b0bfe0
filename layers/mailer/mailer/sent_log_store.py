"""Sent-log entries in DynamoDB, newest first per tenant, expiring after the retention period."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mailer import aws_clients
from mailer.errors import ServiceUnavailable
from mailer.sent_log import SentLogEntry
from mailer.settings_store import tenant_pk


class SentLogStore:
    def __init__(self, table_name: str, *, retention_days: int) -> None:
        self.table_name = table_name
        self.retention_days = retention_days

    @property
    def _table(self) -> Any:
        return aws_clients.dynamodb_table(self.table_name)

    def put(self, tenant_id: str, entry: SentLogEntry) -> None:
        created = datetime.fromisoformat(entry.created_at.replace("Z", "+00:00"))
        item: dict[str, Any] = {
            "pk": tenant_pk(tenant_id),
            "sk": f"EMAIL#{entry.id}",
            "expires_at": int((created + timedelta(days=self.retention_days)).timestamp()),
            "entry": entry.model_dump(mode="json", by_alias=True),
        }
        if entry.document:
            item["gsi1pk"] = (
                f"{tenant_pk(tenant_id)}#DOC#{entry.document.get('type')}#{entry.document.get('number')}"
            )
            item["gsi1sk"] = entry.id
        if entry.work_order_id:
            item["gsi2pk"] = f"{tenant_pk(tenant_id)}#WO#{entry.work_order_id}"
            item["gsi2sk"] = entry.id
        try:
            self._table.put_item(Item=item)
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The sent log could not be written.") from None

    def get(self, tenant_id: str, entry_id: str) -> SentLogEntry | None:
        try:
            item = self._table.get_item(Key={"pk": tenant_pk(tenant_id), "sk": f"EMAIL#{entry_id}"}).get(
                "Item"
            )
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The sent log could not be read; try again shortly.") from None
        return SentLogEntry.model_validate(_plain(item["entry"])) if item else None


def _plain(value: Any) -> Any:
    """DynamoDB hands numbers back as Decimal; the entry wants ints."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
