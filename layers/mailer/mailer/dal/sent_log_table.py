"""Sent-log entries in DynamoDB, newest first per tenant, expiring after the retention period.

An entry's key is its id, so writing the same entry again (a queued sent-log write, a retry) keeps
one entry.
"""

from __future__ import annotations

import base64
import builtins
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from boto3.dynamodb.conditions import Attr, Key
from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients, keys
from mailer.dal.keys import tenant_pk
from mailer.dal.ledger_table import batch_put
from mailer.errors import InvalidInput, ServiceUnavailable
from mailer.sent_log.models import SentLogEntry
from mailer.tracking.models import Timeline

FILTER_READ = 200  # entries one page of a delivery-status listing reads
FILTER_PAGES = 5  # pages one such request reads at most
TIMELINE_TRIES = 5  # read-change-write rounds when events for one entry arrive at the same moment


class SentLogStore:
    def __init__(self, table_name: str, *, retention_days: int) -> None:
        self.table_name = table_name
        self.retention_days = retention_days

    @property
    def _table(self) -> Any:
        return clients.dynamodb_table(self.table_name)

    def put(self, tenant_id: str, entry: SentLogEntry, request: dict[str, Any] | None = None) -> None:
        """Write an entry; `request` is what a resend needs and is never shown."""
        try:
            self._table.put_item(Item=self._item(tenant_id, entry, request))
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The sent log could not be written.") from None

    def put_many(
        self,
        entries: Sequence[tuple[str, SentLogEntry]],
        requests: Mapping[str, dict[str, Any]] | None = None,
    ) -> list[tuple[str, SentLogEntry]]:
        """Write (tenant, entry) pairs in BatchWriteItem calls of 25, unprocessed ones again with
        backoff; returns those still not written (it never raises: the caller decides where they go).
        `requests` (by entry id) are kept with their entries, as `put` keeps one."""
        items = {(tenant_pk(t), keys.email_sk(e.id)): (t, e) for t, e in entries}
        written = [self._item(t, e, (requests or {}).get(e.id)) for t, e in items.values()]
        left = batch_put(self._table.meta.client, self.table_name, written)
        return [pair for key, pair in items.items() if key in left]

    def _item(self, tenant_id: str, entry: SentLogEntry, request: dict[str, Any] | None) -> dict[str, Any]:
        created = datetime.fromisoformat(entry.created_at.replace("Z", "+00:00"))
        item: dict[str, Any] = {
            "pk": tenant_pk(tenant_id),
            "sk": keys.email_sk(entry.id),
            "expires_at": int((created + timedelta(days=self.retention_days)).timestamp()),
            "entry": entry.model_dump(mode="json", by_alias=True),
        }
        if request is not None:
            item["request"] = request
        if entry.document:
            item["gsi1pk"] = keys.document_index_pk(
                tenant_id, entry.document.get("type"), entry.document.get("number")
            )
            item["gsi1sk"] = entry.id
        if entry.work_order_id:
            item["gsi2pk"] = keys.work_order_index_pk(tenant_id, entry.work_order_id)
            item["gsi2sk"] = entry.id
        if entry.message_id:
            item["gsi3pk"] = keys.message_index_pk(entry.message_id)
        return item

    def find_message(self, message_id: str) -> list[tuple[str, str]]:
        """(tenant, entry id) of the entries of a provider's message id (an SES id, a Message-ID)."""
        query = {
            "IndexName": "by_message_id",
            "KeyConditionExpression": Key("gsi3pk").eq(keys.message_index_pk(message_id)),
            "Limit": 10,
        }
        try:
            items = self._table.query(**query).get("Items", [])
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The sent log could not be read; try again shortly.") from None
        return [(keys.tenant_of(item["pk"]), item["sk"].removeprefix(keys.EMAIL_PREFIX)) for item in items]

    def change_timeline(
        self, tenant_id: str, entry_id: str, change: Callable[[Timeline], Timeline | None]
    ) -> SentLogEntry | None:
        """Apply `change` to the entry's events and delivery status; a write that meets another
        writer's (a version moved on) reads again and applies again. None when there is no entry;
        the entry as it was when `change` says there is nothing to change."""
        key = {"pk": tenant_pk(tenant_id), "sk": keys.email_sk(entry_id)}
        for _ in range(TIMELINE_TRIES):
            try:
                item = self._table.get_item(Key=key, ConsistentRead=True).get("Item")
            except (ClientError, BotoCoreError):
                raise ServiceUnavailable("The sent log could not be read; try again shortly.") from None
            if not item:
                return None
            entry = SentLogEntry.model_validate(plain(item["entry"]))
            version = int(item.get("tracking_version", 0))
            changed = change(
                Timeline(status=entry.delivery_status, events=entry.events, keys=item.get("event_keys", []))
            )
            if changed is None:
                return entry
            updated = entry.model_copy(update={"delivery_status": changed.status, "events": changed.events})
            values: dict[str, Any] = {
                ":status": changed.status,
                ":events": [e.model_dump(mode="json") for e in changed.events],
                ":keys": changed.keys,
                ":version": version + 1,
            }
            condition = "attribute_exists(pk) AND "
            if version:
                condition += "tracking_version = :was"
                values[":was"] = version
            else:
                condition += "attribute_not_exists(tracking_version)"
            try:
                self._table.update_item(
                    Key=key,
                    UpdateExpression=(
                        "SET #entry.delivery_status = :status, #entry.events = :events, "
                        "event_keys = :keys, tracking_version = :version"
                    ),
                    ConditionExpression=condition,
                    ExpressionAttributeNames={"#entry": "entry"},
                    ExpressionAttributeValues=values,
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    continue
                raise ServiceUnavailable("The sent log could not be written.") from None
            except BotoCoreError:
                raise ServiceUnavailable("The sent log could not be written.") from None
            return updated
        raise ServiceUnavailable("The sent log entry changed too often at once; the event is retried.")

    def get(self, tenant_id: str, entry_id: str) -> SentLogEntry | None:
        found = self.get_with_request(tenant_id, entry_id)
        return found[0] if found else None

    def get_with_request(
        self, tenant_id: str, entry_id: str
    ) -> tuple[SentLogEntry, dict[str, Any] | None] | None:
        key = {"pk": tenant_pk(tenant_id), "sk": keys.email_sk(entry_id)}
        try:
            item = self._table.get_item(Key=key).get("Item")
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The sent log could not be read; try again shortly.") from None
        if not item:
            return None
        request = plain(item["request"]) if "request" in item else None
        return SentLogEntry.model_validate(plain(item["entry"])), request

    def list(
        self,
        tenant_id: str,
        *,
        document: tuple[str, str] | None = None,
        work_order_id: str | None = None,
        delivery_status: str | None = None,
        status: str | None = None,
        limit: int = 25,
        cursor: str | None = None,
    ) -> tuple[list[SentLogEntry], str | None]:
        """Newest first: by document, by work order, by (delivery) status, or all of the tenant's."""
        pk = tenant_pk(tenant_id)
        query: dict[str, Any] = {"ScanIndexForward": False, "Limit": limit}
        if document:
            query["IndexName"] = "by_document"
            query["KeyConditionExpression"] = Key("gsi1pk").eq(keys.document_index_pk(tenant_id, *document))
        elif work_order_id:
            query["IndexName"] = "by_work_order"
            query["KeyConditionExpression"] = Key("gsi2pk").eq(
                keys.work_order_index_pk(tenant_id, work_order_id)
            )
        else:
            query["KeyConditionExpression"] = Key("pk").eq(pk) & Key("sk").begins_with(keys.EMAIL_PREFIX)
        if cursor:
            query["ExclusiveStartKey"] = decode_cursor(cursor, pk)
        if delivery_status or status:
            return self._filtered(query, limit, delivery_status=delivery_status, status=status)
        try:
            page = self._table.query(**query)
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The sent log could not be read; try again shortly.") from None
        entries = [SentLogEntry.model_validate(plain(item["entry"])) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        return entries, encode_cursor(last) if last else None

    def _filtered(
        self, query: dict[str, Any], limit: int, *, delivery_status: str | None, status: str | None
    ) -> tuple[builtins.list[SentLogEntry], str | None]:
        """Entries of one (delivery) status: the tenant's entries read newest first with a filter, up
        to FILTER_PAGES pages, so one request stays short; the cursor goes on where reading stopped
        (a page may hold fewer than `limit` entries while more follow). A filter rather than an
        index: DynamoDB adds one index per table update, and the message-id index came first."""
        conditions = [Attr("entry.delivery_status").eq(delivery_status)] if delivery_status else []
        conditions += [Attr("entry.status").eq(status)] if status else []
        condition = conditions[0] if len(conditions) == 1 else conditions[0] & conditions[1]
        query = {**query, "Limit": FILTER_READ, "FilterExpression": condition}
        entries: builtins.list[SentLogEntry] = []
        last: dict[str, Any] | None = None
        for _ in range(FILTER_PAGES):
            try:
                page = self._table.query(**query)
            except (ClientError, BotoCoreError):
                raise ServiceUnavailable("The sent log could not be read; try again shortly.") from None
            for item in page.get("Items", []):
                entries.append(SentLogEntry.model_validate(plain(item["entry"])))
                if len(entries) == limit:
                    return entries, encode_cursor({"pk": item["pk"], "sk": item["sk"]})
            last = page.get("LastEvaluatedKey")
            if not last:
                break
            query["ExclusiveStartKey"] = last
        return entries, encode_cursor(last) if last else None


def encode_cursor(key: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, tenant_pk_value: str) -> dict[str, Any]:
    """Only a cursor this API handed out, for this tenant, is accepted."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, TypeError):
        raise InvalidInput.on("cursor", "not a cursor from a previous page") from None
    valid = (
        isinstance(key, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in key.items())
        and key.get("pk") == tenant_pk_value
        and all(
            v == tenant_pk_value or v.startswith(tenant_pk_value + "#")
            for k, v in key.items()
            if k.endswith("pk")
        )
    )
    if not valid:
        raise InvalidInput.on("cursor", "not a cursor from a previous page")
    return key


def plain(value: Any) -> Any:
    """DynamoDB hands numbers back as Decimal; the entry wants ints."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
