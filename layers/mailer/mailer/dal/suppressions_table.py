"""The suppression list in the settings table: one item per (tenant, address), sk SUPPRESS#<address>
with the address as `normalized` keeps it, so a send looks its recipients up by key (one
BatchGetItem for a whole batch) and the list is one Query of the tenant's partition."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients, keys
from mailer.dal.batch_read import get_items
from mailer.dal.keys import tenant_pk
from mailer.errors import ServiceUnavailable
from mailer.suppression.models import Suppression, normalized

READ_FAILED = "The suppression list could not be read; try again shortly."
WRITE_FAILED = "The suppression list could not be changed; nothing was changed."


def _key(tenant_id: str, address: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": keys.SUPPRESSION_PREFIX + normalized(address)}


def _entry(item: dict[str, Any]) -> Suppression:
    return Suppression.model_validate({k: item.get(k) for k in ("email", "reason", "created_at", "email_id")})


class SuppressionStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _table(self) -> Any:
        return clients.dynamodb_table(self.table_name)

    def find(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Suppression]:
        """The entries of these (tenant, address) pairs that exist, by (tenant, normalized address)."""
        wanted = {(t, normalized(a)) for t, a in pairs}
        if not wanted:
            return {}
        items = get_items(self._table, (_key(t, a) for t, a in wanted), READ_FAILED)
        return {
            (
                item["pk"].removeprefix(tenant_pk("")),
                item["sk"].removeprefix(keys.SUPPRESSION_PREFIX),
            ): _entry(item)
            for item in items
        }

    def list(self, tenant_id: str) -> list[Suppression]:
        query: dict[str, Any] = {
            "KeyConditionExpression": Key("pk").eq(tenant_pk(tenant_id))
            & Key("sk").begins_with(keys.SUPPRESSION_PREFIX),
            "ConsistentRead": True,
        }
        found: list[Suppression] = []
        try:
            while True:
                page = self._table.query(**query)
                found += [_entry(item) for item in page.get("Items", [])]
                if "LastEvaluatedKey" not in page:
                    return found
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable(READ_FAILED) from None

    def put(self, tenant_id: str, entry: Suppression) -> None:
        item = _key(tenant_id, entry.email) | entry.model_dump(exclude_none=True)
        try:
            self._table.put_item(Item=item)
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable(WRITE_FAILED) from None

    def delete(self, tenant_id: str, address: str) -> bool:
        """False when the address was not on the list."""
        try:
            old = self._table.delete_item(Key=_key(tenant_id, address), ReturnValues="ALL_OLD")
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable(WRITE_FAILED) from None
        return "Attributes" in old
