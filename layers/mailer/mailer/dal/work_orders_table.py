"""Work orders in DynamoDB, with a sparse index of the ones due a reminder, by start date."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients, keys
from mailer.dal.keys import tenant_pk
from mailer.errors import ServiceUnavailable
from mailer.work_orders.models import WorkOrder, reminder_start_date

REMINDER_INDEX = "by_reminder_date"


class WorkOrderStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _table(self) -> Any:
        return clients.dynamodb_table(self.table_name)

    def get(self, tenant_id: str, work_order_id: str) -> WorkOrder | None:
        key = {"pk": tenant_pk(tenant_id), "sk": keys.work_order_sk(work_order_id)}
        try:
            item = self._table.get_item(Key=key, ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The work order could not be read; try again shortly.") from None
        return WorkOrder.model_validate(item["work_order"]) if item else None

    def put(self, tenant_id: str, work_order: WorkOrder) -> None:
        """Store the work order and recompute its place in the reminder index."""
        item: dict[str, Any] = {
            "pk": tenant_pk(tenant_id),
            "sk": keys.work_order_sk(work_order.id),
            "work_order": work_order.model_dump(mode="json"),
        }
        start_date = reminder_start_date(work_order)
        if start_date:
            item["gsi1pk"] = keys.reminder_index_pk(tenant_id, start_date)
            item["gsi1sk"] = work_order.id
        try:
            self._table.put_item(Item=item)
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The work order could not be saved; nothing was changed.") from None

    def due(self, tenant_id: str, start_date: str, page_size: int = 100) -> Iterator[WorkOrder]:
        """The work orders starting on `start_date` that may get a reminder, page by page (no Scan)."""
        query: dict[str, Any] = {
            "IndexName": REMINDER_INDEX,
            "KeyConditionExpression": Key("gsi1pk").eq(keys.reminder_index_pk(tenant_id, start_date)),
            "Limit": page_size,
        }
        while True:
            try:
                page = self._table.query(**query)
            except (ClientError, BotoCoreError):
                raise ServiceUnavailable("The work orders could not be read; try again shortly.") from None
            for item in page.get("Items", []):
                yield WorkOrder.model_validate(item["work_order"])
            if "LastEvaluatedKey" not in page:
                return
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
