"""Consistent BatchGetItem reads of many items of one table by key, a hundred keys a call, with the
unprocessed keys asked again under backoff."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from mailer.errors import ServiceUnavailable

READ_BATCH = 100  # BatchGetItem takes a hundred keys a call
READ_ATTEMPTS = 5  # tries of a batch read (its unprocessed keys again), with backoff between


def get_items(table: Any, item_keys: Iterable[dict[str, str]], failed: str) -> Iterator[dict[str, Any]]:
    """The items of these keys (`pk`, `sk`) that exist, in no order. ServiceUnavailable(`failed`)
    when they cannot all be read."""
    pending = list(item_keys)
    client = table.meta.client
    name = table.table_name
    while pending:
        chunk, pending = pending[:READ_BATCH], pending[READ_BATCH:]
        request: dict[str, Any] = {name: {"Keys": chunk, "ConsistentRead": True}}
        for attempt in range(READ_ATTEMPTS):
            try:
                response = client.batch_get_item(RequestItems=request)
            except (ClientError, BotoCoreError):
                raise ServiceUnavailable(failed) from None
            yield from response["Responses"].get(name, [])
            request = response.get("UnprocessedKeys") or {}
            if not request:
                break
            time.sleep(0.05 * 2**attempt)
        else:
            raise ServiceUnavailable(failed)
