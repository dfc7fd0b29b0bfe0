"""Pending OAuth connections: one item per `state`, single-use, expiring after ten minutes.

The key is a SHA-256 of the state, so the table never holds a value that would complete a
connection from the browser's side. Taking a state deletes it in the same request (a conditional
delete returning the old item), so a state can be used once however many callbacks race.
"""

from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients
from mailer.errors import ServiceUnavailable


def state_key(state: str) -> dict[str, str]:
    return {"pk": "OAUTHSTATE#" + hashlib.sha256(state.encode()).hexdigest()}


class OAuthStateStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _table(self) -> Any:
        return clients.dynamodb_table(self.table_name)

    def put(self, state: str, data: dict[str, Any], expires_at: int) -> None:
        try:
            self._table.put_item(Item=state_key(state) | {"data": data, "expires_at": expires_at})
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The connection could not be started; try again.") from None

    def take(self, state: str) -> tuple[dict[str, Any], int] | None:
        """The state's data and expiry, deleted as it is read; None when unknown or already used."""
        try:
            old = self._table.delete_item(
                Key=state_key(state), ReturnValues="ALL_OLD", ConditionExpression="attribute_exists(pk)"
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise ServiceUnavailable("The connection could not be completed; try again.") from None
        except BotoCoreError:
            raise ServiceUnavailable("The connection could not be completed; try again.") from None
        item = old.get("Attributes")
        return (item["data"], int(item["expires_at"])) if item else None
