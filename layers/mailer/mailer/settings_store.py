"""Settings items in DynamoDB: one per (tenant, profile). The password is never stored here."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mailer import aws_clients
from mailer.errors import ServiceUnavailable


def tenant_pk(tenant_id: str) -> str:
    return f"TENANT#{tenant_id}"


class SettingsStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _table(self) -> Any:
        return aws_clients.dynamodb_table(self.table_name)

    @staticmethod
    def _key(tenant_id: str, profile_key: str) -> dict[str, str]:
        return {"pk": tenant_pk(tenant_id), "sk": f"SETTINGS#{profile_key}"}

    def get(self, tenant_id: str, profile_key: str) -> dict[str, Any] | None:
        try:
            item = self._table.get_item(Key=self._key(tenant_id, profile_key), ConsistentRead=True).get(
                "Item"
            )
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The settings could not be read; try again shortly.") from None
        if item is None:
            return None
        item = {k: v for k, v in item.items() if k not in ("pk", "sk")}
        if "port" in item:
            item["port"] = int(item["port"])
        return item

    def put(self, tenant_id: str, profile_key: str, data: dict[str, Any]) -> None:
        item = {k: v for k, v in data.items() if v is not None} | self._key(tenant_id, profile_key)
        try:
            self._table.put_item(Item=item)
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The settings could not be saved; nothing was changed.") from None

    def delete(self, tenant_id: str, profile_key: str) -> bool:
        try:
            old = self._table.delete_item(Key=self._key(tenant_id, profile_key), ReturnValues="ALL_OLD")
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The settings could not be deleted; try again.") from None
        return "Attributes" in old
