"""Work orders in DynamoDB, with a sparse index of the ones due a reminder, by start date.

Every write counts a version (1 for the first, then one more each time): the sync's write is
unconditional and takes the next version; a status change writes only on the version it read.

The outbox worker reads a batch's work orders at once (`get_many`, BatchGetItem) and marks its
reminded ones at once (`put_if_versions`, one TransactWriteItems of writes on the versions read).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, overload

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients, keys
from mailer.dal.batch_read import get_items
from mailer.dal.keys import tenant_pk
from mailer.errors import ServiceUnavailable
from mailer.work_orders.models import WorkOrder, reminder_start_date

REMINDER_INDEX = "by_reminder_date"
VERSION = "version"  # a top-level attribute, beside the work order's JSON, so conditions can name it
TRANSACTION_ITEMS = 100  # TransactWriteItems takes a hundred items


def _key(tenant_id: str, work_order_id: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": keys.work_order_sk(work_order_id)}


def _stored(work_order: WorkOrder) -> dict[str, Any]:
    return work_order.model_dump(mode="json", exclude={"version"})


def _work_order(item: dict[str, Any]) -> WorkOrder:
    """The work order of an item; one stored before versions were counted is version 0."""
    return WorkOrder.model_validate(item["work_order"] | {"version": int(item.get(VERSION, 0))})


class WorkOrderStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _table(self) -> Any:
        return clients.dynamodb_table(self.table_name)

    def get(self, tenant_id: str, work_order_id: str) -> WorkOrder | None:
        try:
            item = self._table.get_item(Key=_key(tenant_id, work_order_id), ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The work order could not be read; try again shortly.") from None
        return _work_order(item) if item else None

    @overload
    def put(self, tenant_id: str, work_order: WorkOrder) -> WorkOrder: ...

    @overload
    def put(self, tenant_id: str, work_order: WorkOrder, *, expected_version: int) -> WorkOrder | None: ...

    def put(
        self, tenant_id: str, work_order: WorkOrder, *, expected_version: int | None = None
    ) -> WorkOrder | None:
        """Store the work order one version past the stored one, recompute its place in the reminder
        index, and return it as stored (its `version` is the store's, whatever the model carried).

        With `expected_version` the write is conditional: it happens only while the stored version is
        still that one (0: an item stored before versions). None: another write came first, and
        nothing was written."""
        if expected_version is None:
            return self._put_next_version(tenant_id, work_order)
        return self._put_if_version(tenant_id, work_order, expected_version)

    def _put_next_version(self, tenant_id: str, work_order: WorkOrder) -> WorkOrder:
        # One UpdateItem: the increment is DynamoDB's, so a write racing this one is never lost track of.
        start_date = reminder_start_date(work_order)
        names = {"#wo": "work_order", "#v": VERSION}
        values: dict[str, Any] = {":wo": _stored(work_order), ":zero": 0, ":one": 1}
        update = "SET #wo = :wo, #v = if_not_exists(#v, :zero) + :one"
        if start_date:
            update += ", gsi1pk = :gsi1pk, gsi1sk = :gsi1sk"
            values |= {":gsi1pk": keys.reminder_index_pk(tenant_id, start_date), ":gsi1sk": work_order.id}
        else:
            update += " REMOVE gsi1pk, gsi1sk"
        try:
            written = self._table.update_item(
                Key=_key(tenant_id, work_order.id),
                UpdateExpression=update,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
            )["Attributes"]
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The work order could not be saved; nothing was changed.") from None
        return work_order.model_copy(update={"version": int(written[VERSION])})

    def _put_if_version(
        self, tenant_id: str, work_order: WorkOrder, expected_version: int
    ) -> WorkOrder | None:
        item = stored_item(tenant_id, work_order, expected_version + 1)
        try:
            self._table.put_item(Item=item, **_version_condition(expected_version))
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise ServiceUnavailable("The work order could not be saved; nothing was changed.") from None
        except BotoCoreError:
            raise ServiceUnavailable("The work order could not be saved; nothing was changed.") from None
        return work_order.model_copy(update={"version": expected_version + 1})

    def get_many(self, ids: Iterable[tuple[str, str]]) -> dict[tuple[str, str], WorkOrder]:
        """The work orders of these (tenant, work order id) pairs that exist, read as `get` reads
        (consistently), in BatchGetItem calls of a hundred keys; unprocessed keys are asked again
        with backoff. ServiceUnavailable when they cannot all be read."""
        wanted = {(tenant_pk(t), keys.work_order_sk(i)): (t, i) for t, i in ids}
        items = get_items(
            self._table,
            ({"pk": pk, "sk": sk} for pk, sk in wanted),
            "The work orders could not be read; try again shortly.",
        )
        return {wanted[(item["pk"], item["sk"])]: _work_order(item) for item in items}

    def put_if_versions(self, writes: Sequence[tuple[str, WorkOrder, int]]) -> list[WorkOrder] | None:
        """Several writes of `put` with `expected_version`, given as (tenant, work order, expected
        version), in one TransactWriteItems: all or none. The work orders as stored, or None when a
        stored version was no longer the one expected (then nothing was written). A conflict with
        another transaction or a throttle raises ServiceUnavailable, also with nothing written."""
        if len(writes) > TRANSACTION_ITEMS:
            raise ValueError(f"at most {TRANSACTION_ITEMS} work orders at once")
        items = [
            {
                "Put": {
                    "TableName": self.table_name,
                    "Item": stored_item(tenant_id, work_order, expected + 1),
                }
                | _version_condition(expected)
            }
            for tenant_id, work_order, expected in writes
        ]
        try:
            self._table.meta.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            codes = [r.get("Code") for r in exc.response.get("CancellationReasons") or []]
            if exc.response["Error"]["Code"] == "TransactionCanceledException" and set(codes) <= {
                "None",
                "ConditionalCheckFailed",
            }:
                return None
            raise ServiceUnavailable("The work orders could not be saved; nothing was changed.") from None
        except BotoCoreError:
            raise ServiceUnavailable("The work orders could not be saved; nothing was changed.") from None
        return [w.model_copy(update={"version": expected + 1}) for _, w, expected in writes]

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
                yield _work_order(item)
            if "LastEvaluatedKey" not in page:
                return
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _version_condition(expected_version: int) -> dict[str, Any]:
    """The condition of a write on `expected_version` (0: an item stored before versions)."""
    if expected_version:
        return {
            "ConditionExpression": "#v = :expected",
            "ExpressionAttributeNames": {"#v": VERSION},
            "ExpressionAttributeValues": {":expected": expected_version},
        }
    return {
        "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(#v)",
        "ExpressionAttributeNames": {"#v": VERSION},
    }


def stored_item(tenant_id: str, work_order: WorkOrder, version: int) -> dict[str, Any]:
    """The item of a work order at `version`, with its place in the reminder index."""
    item: dict[str, Any] = _key(tenant_id, work_order.id) | {
        "work_order": _stored(work_order),
        VERSION: version,
    }
    start_date = reminder_start_date(work_order)
    if start_date:
        item["gsi1pk"] = keys.reminder_index_pk(tenant_id, start_date)
        item["gsi1sk"] = work_order.id
    return item
