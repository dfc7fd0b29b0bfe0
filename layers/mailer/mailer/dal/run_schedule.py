"""Each company's next scheduled run, in the settings table, and the index the schedule tick reads.

One item per company (sk SEND_SCHEDULE): `run_date`, the local date its next run plans, and
`run_at`, when that is in UTC. The item sits in the settings table's `by_flag` index under one of
RUN_SHARDS partitions (a stable hash of the tenant), sorted by `run_at`, so the tick reads every
company whose run has come (and any a stopped schedule missed) with one Query a shard, and never a
company whose run is still to come.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients, keys
from mailer.dal.batch_read import get_items
from mailer.dal.keys import tenant_pk
from mailer.errors import ServiceUnavailable

INDEX = "by_flag"
READ_FAILED = "The send schedule could not be read; try again shortly."
WRITE_FAILED = "The send schedule could not be saved; try again shortly."


@dataclass(frozen=True)
class DueRun:
    tenant_id: str
    run_date: date


def shard_of(tenant_id: str) -> int:
    return hashlib.sha256(tenant_id.encode()).digest()[0] % keys.RUN_SHARDS


class RunScheduleStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _table(self) -> Any:
        return clients.dynamodb_table(self.table_name)

    @staticmethod
    def _key(tenant_id: str) -> dict[str, str]:
        return {"pk": tenant_pk(tenant_id), "sk": keys.SEND_SCHEDULE_SK}

    def _item(self, tenant_id: str, run_date: date, run_at: str) -> dict[str, Any]:
        return self._key(tenant_id) | {
            "run_date": run_date.isoformat(),
            "run_at": run_at,
            "gsi1pk": keys.run_index_pk(shard_of(tenant_id)),
            "gsi1sk": keys.run_index_sk(run_at, run_date.isoformat(), tenant_id),
        }

    def get(self, tenant_id: str) -> tuple[date, str] | None:
        """The company's pending run: (run date, run at), or None when it has none yet."""
        try:
            item = self._table.get_item(Key=self._key(tenant_id), ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable(READ_FAILED) from None
        if item is None:
            return None
        return date.fromisoformat(item["run_date"]), str(item["run_at"])

    def put(self, tenant_id: str, run_date: date, run_at: str) -> None:
        try:
            self._table.put_item(Item=self._item(tenant_id, run_date, run_at))
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable(WRITE_FAILED) from None

    def advance(self, tenant_id: str, planned: date, run_date: date, run_at: str) -> bool:
        """Move the company on from the run of `planned` to the next one, only while `planned` is still
        its pending run: a second planner of the same run (a redelivery, a tick that came again
        before the first was done) moves it nothing. False when it had moved on already."""
        try:
            self._table.put_item(
                Item=self._item(tenant_id, run_date, run_at),
                ConditionExpression="run_date = :planned",
                ExpressionAttributeValues={":planned": planned.isoformat()},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise ServiceUnavailable(WRITE_FAILED) from None
        except BotoCoreError:
            raise ServiceUnavailable(WRITE_FAILED) from None
        return True

    def without_run(self, tenant_ids: list[str]) -> list[str]:
        """Those of the companies that have no next run yet (a BatchGetItem a hundred)."""
        wanted = {tenant_pk(t): t for t in tenant_ids}
        items = get_items(self._table, (self._key(t) for t in wanted.values()), READ_FAILED)
        having = {wanted[item["pk"]] for item in items}
        return [t for t in dict.fromkeys(tenant_ids) if t not in having]

    def due(self, until: str) -> list[DueRun]:
        """Every company whose run is at or before `until` (2026-12-01T18:00Z): one Query a shard,
        page by page, keys only."""
        found: list[DueRun] = []
        for shard in range(keys.RUN_SHARDS):
            condition = Key("gsi1pk").eq(keys.run_index_pk(shard)) & Key("gsi1sk").lte(f"{until}#\uffff")
            query: dict[str, Any] = {"IndexName": INDEX, "KeyConditionExpression": condition}
            while True:
                try:
                    page = self._table.query(**query)
                except (ClientError, BotoCoreError):
                    raise ServiceUnavailable(READ_FAILED) from None
                for item in page.get("Items", []):
                    _, run_date, tenant_id = str(item["gsi1sk"]).split("#", 2)
                    found.append(DueRun(tenant_id, date.fromisoformat(run_date)))
                if "LastEvaluatedKey" not in page:
                    break
                query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found
