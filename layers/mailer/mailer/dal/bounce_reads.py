"""Where reading each mailbox's bounce reports stopped, and how the last read went.

One item per profile that reads bounces, in the settings table (sk BOUNCES#<profile key>), listed
in the `by_flag` index under gsi1pk BOUNCES#<shard> so the reader finds them with a Query a shard,
never a Scan. The cursor is the folder's UIDVALIDITY and the highest UID looked at.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients
from mailer.dal.keys import RUN_SHARDS, tenant_of, tenant_pk
from mailer.dal.sent_log_table import plain
from mailer.errors import ServiceUnavailable

PREFIX = "BOUNCES#"


@dataclass(frozen=True)
class BounceRead:
    tenant_id: str
    profile_key: str  # "company" or "user/<sub>"
    uidvalidity: int | None = None
    last_uid: int = 0
    status: str = "pending"  # pending | ok | failed
    checked_at: str | None = None
    reports_read: int = 0
    error: dict[str, Any] | None = None


def shard_of(tenant_id: str, profile_key: str) -> int:
    return zlib.crc32(f"{tenant_id}/{profile_key}".encode()) % RUN_SHARDS


class BounceReadStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _table(self) -> Any:
        return clients.dynamodb_table(self.table_name)

    @staticmethod
    def _key(tenant_id: str, profile_key: str) -> dict[str, str]:
        return {"pk": tenant_pk(tenant_id), "sk": PREFIX + profile_key}

    def enable(self, tenant_id: str, profile_key: str) -> None:
        """Listed for the reader; a cursor kept from before stays (saving settings again does not
        read old reports again)."""
        try:
            self._table.update_item(
                Key=self._key(tenant_id, profile_key),
                UpdateExpression=(
                    "SET gsi1pk = :shard, gsi1sk = :who, read_status = if_not_exists(read_status, :pending)"
                ),
                ExpressionAttributeValues={
                    ":shard": f"{PREFIX}{shard_of(tenant_id, profile_key)}",
                    ":who": f"{tenant_id}#{profile_key}",
                    ":pending": "pending",
                },
            )
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The settings could not be saved; try again shortly.") from None

    def disable(self, tenant_id: str, profile_key: str) -> None:
        try:
            self._table.delete_item(Key=self._key(tenant_id, profile_key))
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The settings could not be saved; try again shortly.") from None

    def get(self, tenant_id: str, profile_key: str) -> BounceRead | None:
        try:
            item = self._table.get_item(Key=self._key(tenant_id, profile_key)).get("Item")
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The settings could not be read; try again shortly.") from None
        return _read(item) if item else None

    def listed(self, shard: int) -> list[BounceRead]:
        """Every profile of one shard that reads bounces."""
        found: list[BounceRead] = []
        query: dict[str, Any] = {
            "IndexName": "by_flag",
            "KeyConditionExpression": Key("gsi1pk").eq(f"{PREFIX}{shard}"),
        }
        while True:
            try:
                page = self._table.query(**query)
            except (ClientError, BotoCoreError):
                raise ServiceUnavailable("The bounce readers could not be listed.") from None
            found += [r for r in (_read(item) for item in page.get("Items", [])) if r is not None]
            if "LastEvaluatedKey" not in page:
                return found
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def record(self, read: BounceRead) -> None:
        """The outcome of one read; only while the profile still reads bounces (it may have been
        switched off meanwhile: then nothing is written back)."""
        values: dict[str, Any] = {
            ":status": read.status,
            ":at": read.checked_at,
            ":uid": read.last_uid,
            ":count": read.reports_read,
            ":error": read.error,
        }
        expression = "SET read_status = :status, checked_at = :at, last_uid = :uid, reports_read = :count"
        expression += ", read_error = :error"
        if read.uidvalidity is not None:
            expression += ", uidvalidity = :validity"
            values[":validity"] = read.uidvalidity
        try:
            self._table.update_item(
                Key=self._key(read.tenant_id, read.profile_key),
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return
            raise ServiceUnavailable("Where bounce reading stopped could not be kept.") from None
        except BotoCoreError:
            raise ServiceUnavailable("Where bounce reading stopped could not be kept.") from None


def _read(item: dict[str, Any]) -> BounceRead | None:
    sk = str(item.get("sk", ""))
    if not sk.startswith(PREFIX):
        return None
    validity = item.get("uidvalidity")
    return BounceRead(
        tenant_id=tenant_of(str(item["pk"])),
        profile_key=sk.removeprefix(PREFIX),
        uidvalidity=int(validity) if validity is not None else None,
        last_uid=int(item.get("last_uid", 0)),
        status=str(item.get("read_status", "pending")),
        checked_at=item.get("checked_at"),
        reports_read=int(item.get("reports_read", 0)),
        error=plain(item.get("read_error")),
    )
