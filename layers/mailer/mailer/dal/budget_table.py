"""Sending budgets in DynamoDB: counters per account and window, and leases on connection slots.

Items (pk `BUDGET#<account>`):
- `M#<unix minute>`: messages sent in that minute; `D#<UTC day>`: recipients sent to that day.
  Each is raised with a conditional UpdateItem (ADD), so concurrent functions never pass a limit
  together: the condition and the increment are one atomic write. A request that takes from both
  windows takes in one TransactWriteItems, so it is never counted in one and refused by the other.
- `L#<slot>`: a lease on one of the account's connection slots, held by one open connection. A lease
  carries its expiry: a Lambda that dies holding one frees the slot when it expires; TTL removes
  the item later.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients
from mailer.errors import ServiceUnavailable

MINUTE_TTL = 2 * 3600  # counters are kept a little past their window, for `usage`
DAY_TTL = 3 * 86400


def _pk(account: str) -> str:
    return f"BUDGET#{account}"


def minute_of(now: float) -> int:
    return int(now // 60)


def day_of(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).date().isoformat()


@dataclass(frozen=True)
class Take:
    """What one send takes from an account: messages count per minute, recipients per day."""

    messages: int
    recipients: int


@dataclass(frozen=True)
class Refused:
    """Which window had no room: `per_minute` or `per_day`."""

    limit: str


class BudgetStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _client(self) -> Any:
        return clients.client("dynamodb")

    def _window_update(
        self, account: str, sk: str, amount: int, limit: int | None, ttl: int
    ) -> dict[str, Any]:
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"pk": {"S": _pk(account)}, "sk": {"S": sk}},
            "UpdateExpression": "ADD n :amount SET expires_at = if_not_exists(expires_at, :expires)",
            "ExpressionAttributeValues": {":amount": {"N": str(amount)}, ":expires": {"N": str(ttl)}},
        }
        if limit is not None:
            update["ConditionExpression"] = "attribute_not_exists(n) OR n <= :room"
            update["ExpressionAttributeValues"][":room"] = {"N": str(limit - amount)}
        return update

    def take(
        self, account: str, take: Take, per_minute: int | None, per_day: int | None, now: float
    ) -> Refused | None:
        """Count `take` in the minute and day windows of `now`; Refused (nothing counted) when either
        limit would be passed. Both windows are counted even without a limit: that is the usage."""
        if per_minute is not None and take.messages > per_minute:
            return Refused("per_minute")
        if per_day is not None and take.recipients > per_day:
            return Refused("per_day")
        now_i = int(now)
        updates = [
            (
                "per_minute",
                self._window_update(
                    account, f"M#{minute_of(now)}", take.messages, per_minute, now_i + MINUTE_TTL
                ),
            ),
            (
                "per_day",
                self._window_update(account, f"D#{day_of(now)}", take.recipients, per_day, now_i + DAY_TTL),
            ),
        ]
        try:
            self._client.transact_write_items(TransactItems=[{"Update": update} for _, update in updates])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise ServiceUnavailable("The sending budget could not be checked; try again.") from None
            reasons = exc.response.get("CancellationReasons") or []
            for (limit, _), reason in zip(updates, reasons, strict=False):
                if reason.get("Code") == "ConditionalCheckFailed":
                    return Refused(limit)
            raise ServiceUnavailable("The sending budget is busy; try again.") from None
        except BotoCoreError:
            raise ServiceUnavailable("The sending budget could not be checked; try again.") from None
        return None

    def usage(self, account: str, now: float) -> tuple[int, int]:
        """Messages this minute and recipients today, in one BatchGetItem."""
        wanted = [f"M#{minute_of(now)}", f"D#{day_of(now)}"]
        request = {
            self.table_name: {
                "Keys": [{"pk": {"S": _pk(account)}, "sk": {"S": sk}} for sk in wanted],
                "ConsistentRead": True,
            }
        }
        try:
            response = self._client.batch_get_item(RequestItems=request)
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The sending budget could not be read; try again.") from None
        found = {
            item["sk"]["S"]: int(item.get("n", {}).get("N", "0"))
            for item in response.get("Responses", {}).get(self.table_name, [])
        }
        return found.get(wanted[0], 0), found.get(wanted[1], 0)

    def lease(self, account: str, slots: int, owner: str, seconds: float, now: float) -> int | None:
        """Hold one of `slots` connection slots until released or `seconds` from now; the slot, or
        None when every slot is held by a lease that has not expired."""
        start = zlib.crc32(owner.encode()) % slots  # owners spread over the slots
        for step in range(slots):
            slot = (start + step) % slots
            try:
                self._client.put_item(
                    TableName=self.table_name,
                    Item={
                        "pk": {"S": _pk(account)},
                        "sk": {"S": f"L#{slot}"},
                        "owner": {"S": owner},
                        "until": {"N": str(now + seconds)},
                        "expires_at": {"N": str(int(now + seconds) + 3600)},
                    },
                    ConditionExpression="attribute_not_exists(pk) OR #until < :now",
                    ExpressionAttributeNames={"#until": "until"},
                    ExpressionAttributeValues={":now": {"N": str(now)}},
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    continue
                raise ServiceUnavailable("The connection budget could not be checked; try again.") from None
            except BotoCoreError:
                raise ServiceUnavailable("The connection budget could not be checked; try again.") from None
            return slot
        return None

    def release(self, account: str, slot: int, owner: str) -> None:
        """Give a slot back; a lease that expired and was taken by another owner is left alone."""
        try:
            self._client.delete_item(
                TableName=self.table_name,
                Key={"pk": {"S": _pk(account)}, "sk": {"S": f"L#{slot}"}},
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except (ClientError, BotoCoreError):
            pass  # it expires by itself; a failed release only holds the slot until then

    def lease_expiry(self, account: str) -> float | None:
        """When the first held lease of the account runs out (for Retry-After), or None."""
        try:
            response = self._client.query(
                TableName=self.table_name,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :lease)",
                ExpressionAttributeValues={":pk": {"S": _pk(account)}, ":lease": {"S": "L#"}},
                ConsistentRead=True,
            )
        except (ClientError, BotoCoreError):
            return None
        until = [float(item["until"]["N"]) for item in response.get("Items", [])]
        return min(until) if until else None


def seconds_to_next_minute(now: float) -> int:
    return 60 - int(now % 60)


def seconds_to_next_day(now: float) -> int:
    return 86400 - int(now % 86400)
