"""Per-tenant configuration items in DynamoDB (settings, templates, automations).

Sort keys: SETTINGS#company, SETTINGS#user/<sub>, DOCTEMPLATE#<type>, AUTOMATION#<type>.
The mail password is never stored here.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients
from mailer.dal.keys import tenant_pk
from mailer.errors import ServiceUnavailable


class SettingsStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _table(self) -> Any:
        return clients.dynamodb_table(self.table_name)

    @staticmethod
    def _key(tenant_id: str, sort_key: str) -> dict[str, str]:
        """Callers pass the whole sort key: SETTINGS#company, AUTOMATION#reminder, DOCTEMPLATE#invoice."""
        return {"pk": tenant_pk(tenant_id), "sk": sort_key}

    def get(self, tenant_id: str, sort_key: str) -> dict[str, Any] | None:
        try:
            item = self._table.get_item(Key=self._key(tenant_id, sort_key), ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The settings could not be read; try again shortly.") from None
        return None if item is None else _without_keys(item)

    def list_prefix(self, tenant_id: str, prefix: str) -> dict[str, dict[str, Any]]:
        """Every item whose sort key starts with `prefix`, keyed by the rest of the sort key."""
        found: dict[str, dict[str, Any]] = {}
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(tenant_pk(tenant_id)) & Key("sk").begins_with(prefix)
        }
        try:
            while True:
                page = self._table.query(**query)
                for item in page.get("Items", []):
                    found[item["sk"][len(prefix) :]] = _without_keys(item)
                if "LastEvaluatedKey" not in page:
                    return found
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The settings could not be read; try again shortly.") from None

    def tenants_in_index(self, index_pk: str) -> list[str]:
        """Tenants whose item carries `index_pk` in the sparse index (e.g. an active reminder)."""
        tenants: list[str] = []
        query: dict[str, Any] = {"IndexName": "by_flag", "KeyConditionExpression": Key("gsi1pk").eq(index_pk)}
        try:
            while True:
                page = self._table.query(**query)
                tenants.extend(item["gsi1sk"] for item in page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    return tenants
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The settings could not be read; try again shortly.") from None

    def put(self, tenant_id: str, sort_key: str, data: dict[str, Any]) -> None:
        item = {k: v for k, v in data.items() if v is not None} | self._key(tenant_id, sort_key)
        try:
            self._table.put_item(Item=item)
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The settings could not be saved; nothing was changed.") from None

    def set_oauth_status(self, tenant_id: str, sort_key: str, status: str, *, expected: str) -> bool:
        """Change an OAuth profile's status only from `expected`; False when it was not (or is gone)."""
        try:
            self._table.update_item(
                Key=self._key(tenant_id, sort_key),
                UpdateExpression="SET #o.#s = :status",
                ConditionExpression="#o.#s = :expected",
                ExpressionAttributeNames={"#o": "oauth", "#s": "status"},
                ExpressionAttributeValues={":status": status, ":expected": expected},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise ServiceUnavailable("The settings could not be updated; try again.") from None
        except BotoCoreError:
            raise ServiceUnavailable("The settings could not be updated; try again.") from None
        return True

    def delete(self, tenant_id: str, sort_key: str) -> bool:
        try:
            old = self._table.delete_item(Key=self._key(tenant_id, sort_key), ReturnValues="ALL_OLD")
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The settings could not be deleted; try again.") from None
        return "Attributes" in old


def _without_keys(item: dict[str, Any]) -> dict[str, Any]:
    hidden = ("pk", "sk", "gsi1pk", "gsi1sk")
    return {k: int(v) if isinstance(v, Decimal) else v for k, v in item.items() if k not in hidden}
