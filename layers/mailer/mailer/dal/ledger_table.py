"""The send ledger: one item per (tenant, automation, work order, occurrence).

The worker claims an item with a conditional put before sending, so a second schedule tick, an
SQS redelivery or a retried invocation never sends the same automated email twice. States:
sending (claimed) -> sent | failed; a transient failure deletes the claim so the redelivery can
try again. A claim found in `sending` is never sent again: the worker may have crashed after the
server accepted the message, and a missed reminder is better than a double one.

The planner only reads the ledger (BatchGetItem, 100 keys a call) to leave out what was sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients, keys
from mailer.dal.keys import tenant_pk
from mailer.errors import ServiceUnavailable

LEDGER_DAYS = 60
LedgerKey = tuple[str, str, str, str]  # tenant, automation, work order, occurrence


def _key(tenant_id: str, automation: str, work_order_id: str, occurrence: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": keys.ledger_sk(automation, work_order_id, occurrence)}


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
        now = int(time.time())
        return self._conditional(
            "put_item",
            Item=_key(*key)
            | {"state": "sending", "claimed_at": now, "expires_at": now + LEDGER_DAYS * 86400},
            ConditionExpression="attribute_not_exists(pk)",
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
            UpdateExpression="SET #s = :state",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":state": state},
        )

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
