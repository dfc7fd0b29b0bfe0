"""The send ledger: one item per (tenant, automation, work order, occurrence).

The worker claims an item with a conditional put before sending, so a second schedule tick, an
SQS redelivery or a retried invocation never sends the same automated email twice. States:
sending (claimed) -> sent | failed; a transient failure deletes the claim so the redelivery can
try again. A claim found in `sending` is never sent again: the worker may have crashed after the
server accepted the message, and a missed reminder is better than a double one.

The planner only reads the ledger (BatchGetItem, 100 keys a call) to leave out what was sent.

The worker claims a whole batch at once (`claim_many`: a conditional PutItem for one claim, a
TransactWriteItems of conditional puts for more) and records the outcomes at once (`finish_many`:
BatchWriteItem, 25 items a call). A finished item may carry `unlogged`, the sent-log entry of its
send when neither the sent log nor the queue took it, so the next delivery of the message writes it.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients, keys
from mailer.dal.keys import tenant_pk
from mailer.errors import ServiceUnavailable

LEDGER_DAYS = 60
CLAIM_SHARDS = 4  # open claims are spread over this many index partitions (by_open_claim)
LedgerKey = tuple[str, str, str, str]  # tenant, automation, work order, occurrence
TRANSACTION_ITEMS = 100  # TransactWriteItems takes a hundred items; an SQS batch is at most ten
CLAIM_ATTEMPTS = 3  # claim transactions a batch may try when a conflict or a throttle cancels one
WRITE_BATCH = 25  # BatchWriteItem takes twenty-five items a call
WRITE_ATTEMPTS = 4  # tries of a batch write (its unprocessed items again), with backoff between


def _key(tenant_id: str, automation: str, work_order_id: str, occurrence: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": keys.ledger_sk(automation, work_order_id, occurrence)}


def parse_key(pk: str, sk: str) -> LedgerKey:
    """The ledger key of an item: the occurrence has no `#`, the record id may."""
    automation, rest = sk.split("#", 1)
    record_id, occurrence = rest.rsplit("#", 1)
    return pk.removeprefix(keys.tenant_pk("")), automation, record_id, occurrence


def open_claim_shard(key: LedgerKey) -> str:
    """The by_open_claim partition of a claim: a stable spread, so no one partition takes every claim."""
    digest = hashlib.sha256("\x1f".join(key).encode()).digest()
    return f"claims#{digest[0] % CLAIM_SHARDS}"


def claim_item(key: LedgerKey, now: int) -> dict[str, Any]:
    """The ledger item of a new claim. `open_claim` puts it in the sparse index of open claims
    until `finish` removes it."""
    return _key(*key) | {
        "state": "sending",
        "claimed_at": now,
        "open_claim": open_claim_shard(key),
        "expires_at": now + LEDGER_DAYS * 86400,
    }


@dataclass(frozen=True)
class Finish:
    """How a claim ended: `sent` or `failed`; `unlogged`, the sent-log entry (as stored) that could be
    written neither to the sent log nor to the queue, for the next delivery of the message to write."""

    key: LedgerKey
    state: str
    claimed_at: int
    unlogged: dict[str, Any] | None = None


def finished_item(finish: Finish) -> dict[str, Any]:
    """The whole item of a finished claim: the claim's, without `open_claim` (so it leaves the index of
    open claims), in its final state."""
    item = {k: v for k, v in claim_item(finish.key, finish.claimed_at).items() if k != "open_claim"}
    item["state"] = finish.state
    if finish.unlogged is not None:
        item["unlogged"] = finish.unlogged
    return item


@dataclass(frozen=True)
class Taken:
    """What a claim found instead: an earlier claim of the same send, `sending`, `sent`, `failed` (or
    `unknown`), with the sent-log entry its worker could not write, if any."""

    state: str
    claimed_at: int
    unlogged: dict[str, Any] | None = None


@dataclass(frozen=True)
class Claims:
    """The outcome of `claim_many`: the keys claimed now (at `claimed_at`), and what was found for
    each of the others."""

    claimed: list[LedgerKey]
    taken: dict[LedgerKey, Taken]
    claimed_at: int


_DESERIALIZER = TypeDeserializer()


_TYPES = {"S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"}


def _plain_item(item: dict[str, Any]) -> dict[str, Any]:
    """An item handed back in an error (ALL_OLD on a failed condition): DynamoDB JSON there, as the
    resource layer only translates successful answers."""
    return {
        name: _DESERIALIZER.deserialize(value)
        if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _TYPES
        else value
        for name, value in item.items()
    }


def _taken(plain: dict[str, Any]) -> Taken:
    """What a claim found, from the item (plain values) handed back with its failed condition."""
    unlogged = plain.get("unlogged")
    return Taken(
        state=str(plain.get("state", "sending")),
        claimed_at=int(plain.get("claimed_at", 0)),
        unlogged=_numbers(unlogged) if isinstance(unlogged, dict) else None,
    )


def _numbers(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal; a stored entry wants its ints back."""
    if isinstance(value, dict):
        return {k: _numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_numbers(v) for v in value]
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class LedgerStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _table(self) -> Any:
        return clients.dynamodb_table(self.table_name)

    def _conditional(self, operation: str, **request: Any) -> bool:
        """Run a conditional write; False when its condition did not hold."""
        try:
            getattr(self._table, operation)(**request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise ServiceUnavailable("The send ledger could not be written; try again.") from None
        except BotoCoreError:
            raise ServiceUnavailable("The send ledger could not be written; try again.") from None
        return True

    def claim(self, key: LedgerKey) -> bool:
        """Claim the send; False when another attempt already claimed, sent or failed it."""
        return self._conditional(
            "put_item", Item=claim_item(key, int(time.time())), ConditionExpression="attribute_not_exists(pk)"
        )

    def release(self, key: LedgerKey) -> None:
        """Give the claim up after a transient failure, so the redelivered message may send."""
        self._conditional(
            "delete_item",
            Key=_key(*key),
            ConditionExpression="#s = :sending",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":sending": "sending"},
        )

    def finish(self, key: LedgerKey, state: str) -> None:
        self._conditional(
            "update_item",
            Key=_key(*key),
            UpdateExpression="SET #s = :state REMOVE open_claim",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":state": state},
        )

    def mark_unknown(self, key: LedgerKey, claimed_before: int) -> bool:
        """Turn a claim left `sending` since before `claimed_before` into `unknown` (the send may have
        happened); False when it is no longer such a claim: finished, released or already marked."""
        return self._conditional(
            "update_item",
            Key=_key(*key),
            UpdateExpression="SET #s = :unknown REMOVE open_claim",
            ConditionExpression="#s = :sending AND claimed_at < :before",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={
                ":unknown": "unknown",
                ":sending": "sending",
                ":before": claimed_before,
            },
        )

    def stale(self, claimed_before: int, limit: int = 500) -> list[LedgerKey]:
        """Claims still `sending` that were made before `claimed_before`, oldest first: a Query on
        each shard of the sparse by_open_claim index, never a Scan."""
        return [key for key, _ in self.stale_claims(claimed_before, limit)]

    def stale_claims(self, claimed_before: int, limit: int = 500) -> list[tuple[LedgerKey, int]]:
        """As `stale`, each key with its claim's `claimed_at` (epoch seconds)."""
        found: list[tuple[int, LedgerKey]] = []
        for shard in range(CLAIM_SHARDS):
            request: dict[str, Any] = {
                "IndexName": "by_open_claim",
                "KeyConditionExpression": "open_claim = :shard AND claimed_at < :before",
                "ExpressionAttributeValues": {":shard": f"claims#{shard}", ":before": claimed_before},
                "Limit": limit,
            }
            try:
                items = self._table.query(**request).get("Items", [])
            except (ClientError, BotoCoreError):
                raise ServiceUnavailable("The send ledger could not be read; try again.") from None
            found += [(int(item["claimed_at"]), parse_key(item["pk"], item["sk"])) for item in items]
        return [(key, claimed_at) for claimed_at, key in sorted(found)[:limit]]

    def state(self, key: LedgerKey) -> str | None:
        try:
            item = self._table.get_item(Key=_key(*key), ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The send ledger could not be read; try again.") from None
        return item["state"] if item else None

    def existing(self, keys: Iterable[LedgerKey]) -> set[LedgerKey]:
        """Which of these sends the ledger already holds, in one BatchGetItem per hundred keys."""
        wanted = {(_key(*k)["pk"], _key(*k)["sk"]): k for k in keys}
        found: set[LedgerKey] = set()
        pending = [{"pk": pk, "sk": sk} for pk, sk in wanted]
        client = self._table.meta.client
        while pending:
            chunk, pending = pending[:100], pending[100:]
            request: dict[str, Any] = {self.table_name: {"Keys": chunk, "ProjectionExpression": "pk, sk"}}
            for attempt in range(5):
                try:
                    response = client.batch_get_item(RequestItems=request)
                except (ClientError, BotoCoreError):
                    raise ServiceUnavailable("The send ledger could not be read; try again.") from None
                for item in response["Responses"].get(self.table_name, []):
                    found.add(wanted[(item["pk"], item["sk"])])
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(0.05 * 2**attempt)
            else:
                raise ServiceUnavailable("The send ledger is busy; try again.")
        return found

    # --- a batch at once: the outbox worker ----------------------------------------------------------

    def claim_many(self, keys: Sequence[LedgerKey]) -> Claims:
        """Claim these sends together. One key: a conditional PutItem, as `claim`. More: one
        TransactWriteItems of conditional puts, all or none. When it is cancelled because some are
        in the ledger already (ConditionalCheckFailed), those are taken and the others are claimed in
        one more; a cancellation by a conflict or a throttle is tried again after a pause. Raises
        ServiceUnavailable when it cannot be done, and then this call claimed nothing.

        A retry of a call whose answer was lost must not find this call's own claims and take them
        for someone else's (the email would never go): botocore fills in the transaction's
        ClientRequestToken, which makes its retries idempotent, and every claim carries this call's
        `claim_id`, by which a conditional put that finds its own claim knows it."""
        now = int(time.time())
        token = uuid.uuid4().hex
        pending = list(dict.fromkeys(keys))
        if len(pending) > TRANSACTION_ITEMS:
            raise ValueError(f"at most {TRANSACTION_ITEMS} claims at once")
        taken: dict[LedgerKey, Taken] = {}
        busy = 0
        while pending:
            if len(pending) == 1:
                found = self._claim_one(pending[0], now, token)
                if found is not None:
                    taken[pending[0]] = found
                    pending = []
                break
            reasons = self._claim_together(pending, now, token)
            if reasons is None:
                break
            conflicted = False
            for key, reason in zip(pending, reasons, strict=True):
                if reason.get("Code") == "ConditionalCheckFailed":
                    taken[key] = _taken(_plain_item(reason.get("Item") or {}))  # nothing was written
                elif reason.get("Code") not in (None, "None"):
                    conflicted = True
            left = [key for key in pending if key not in taken]
            if conflicted or len(left) == len(pending):
                busy += 1
                if busy >= CLAIM_ATTEMPTS:
                    raise ServiceUnavailable("The send ledger is busy; try again.")
                time.sleep(0.05 * 2**busy)
            pending = left
        return Claims(claimed=pending, taken=taken, claimed_at=now)

    def _claim_one(self, key: LedgerKey, now: int, token: str) -> Taken | None:
        try:
            self._table.put_item(
                Item=claim_item(key, now) | {"claim_id": token},
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                found = _plain_item(exc.response.get("Item") or {})
                return None if found.get("claim_id") == token else _taken(found)
            raise ServiceUnavailable("The send ledger could not be written; try again.") from None
        except BotoCoreError:
            raise ServiceUnavailable("The send ledger could not be written; try again.") from None
        return None

    def _claim_together(self, keys: list[LedgerKey], now: int, token: str) -> list[dict[str, Any]] | None:
        """One claim transaction: None when it went through, else its cancellation reasons, in order."""
        condition = {"ConditionExpression": "attribute_not_exists(pk)"}
        items = [
            {
                "Put": {"TableName": self.table_name, "Item": claim_item(key, now) | {"claim_id": token}}
                | condition
                | {"ReturnValuesOnConditionCheckFailure": "ALL_OLD"}
            }
            for key in keys
        ]
        try:
            self._table.meta.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if exc.response["Error"]["Code"] == "TransactionCanceledException" and len(reasons) == len(keys):
                return list(reasons)
            raise ServiceUnavailable("The send ledger could not be written; try again.") from None
        except BotoCoreError:
            raise ServiceUnavailable("The send ledger could not be written; try again.") from None
        return None

    def finish_many(self, finishes: Sequence[Finish]) -> list[LedgerKey]:
        """Record how these claims ended, each an overwrite of its whole item (`finished_item`), in
        BatchWriteItem calls of 25; unprocessed items, and calls that fail, are tried again with
        backoff. Returns the keys still not written: their claims stay open, for the claim sweep."""
        items = {(_key(*f.key)["pk"], _key(*f.key)["sk"]): (f.key, finished_item(f)) for f in finishes}
        left = batch_put(self._table.meta.client, self.table_name, [item for _, item in items.values()])
        return [key for pk_sk, (key, _) in items.items() if pk_sk in left]

    def count_sent(self, tenant_id: str, automation: str, record_id: str) -> int:
        """How many sends of `automation` for one record went out (state `sent`), whatever their
        occurrence: a Query on the tenant's partition by sort key prefix, counted by DynamoDB."""
        request: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "FilterExpression": "#s = :sent",
            "ExpressionAttributeNames": {"#s": "state"},
            "ExpressionAttributeValues": {
                ":pk": keys.tenant_pk(tenant_id),
                ":prefix": keys.ledger_record_prefix(automation, record_id),
                ":sent": "sent",
            },
            "Select": "COUNT",
        }
        count = 0
        while True:
            try:
                page = self._table.query(**request)
            except (ClientError, BotoCoreError):
                raise ServiceUnavailable("The send ledger could not be read; try again.") from None
            count += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                return count
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def batch_put(client: Any, table_name: str, items: Sequence[dict[str, Any]]) -> set[tuple[str, str]]:
    """Put `items` (distinct keys) in BatchWriteItem calls of 25. Unprocessed items, and a call that
    fails as a whole, are tried again with backoff, WRITE_ATTEMPTS times; returns the (pk, sk) of the
    items still not written. Never raises for AWS: the caller decides where those items go."""
    left: set[tuple[str, str]] = set()
    for start in range(0, len(items), WRITE_BATCH):
        requests = [{"PutRequest": {"Item": item}} for item in items[start : start + WRITE_BATCH]]
        for attempt in range(WRITE_ATTEMPTS):
            try:
                response = client.batch_write_item(RequestItems={table_name: requests})
                requests = (response.get("UnprocessedItems") or {}).get(table_name, [])
            except (ClientError, BotoCoreError):
                pass  # the whole call once more
            if not requests:
                break
            if attempt + 1 < WRITE_ATTEMPTS:
                time.sleep(0.05 * 2**attempt)
        left |= {(r["PutRequest"]["Item"]["pk"], r["PutRequest"]["Item"]["sk"]) for r in requests}
    return left
