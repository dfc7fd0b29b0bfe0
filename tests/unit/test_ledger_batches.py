"""The ledger's batch methods against answers moto does not give: a claim transaction cancelled by a
conflict or a throttle, an item handed back in DynamoDB JSON, unprocessed items of a batch write.

The DynamoDB client is a stand-in that answers from a script, in order; everything above it is the
real LedgerStore. What moto answers is compared with the fake in test_fakes_match_stores.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError

from mailer.dal import ledger_table
from mailer.dal.ledger_table import CLAIM_ATTEMPTS, Finish, LedgerStore, Taken, batch_put
from mailer.errors import ServiceUnavailable

KEYS = [("acme", "reminder", f"WO-{n}", "2026-11-24") for n in range(3)]
Answer = Callable[[dict[str, Any]], dict[str, Any]]


def cancelled(*codes: str, item: dict[str, Any] | None = None) -> Answer:
    """TransactWriteItems cancelled with these reasons, one per item (the first failed condition
    carrying `item`, in DynamoDB JSON, as ALL_OLD hands it back)."""

    def answer(_request: dict[str, Any]) -> dict[str, Any]:
        reasons: list[dict[str, Any]] = []
        for code in codes:
            reason: dict[str, Any] = {"Code": code}
            if code == "ConditionalCheckFailed" and item is not None:
                reason["Item"] = item
            reasons.append(reason)
        raise ClientError(
            {
                "Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                "CancellationReasons": reasons,
            },
            "TransactWriteItems",
        )

    return answer


def throttled(_request: dict[str, Any]) -> dict[str, Any]:
    raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "BatchWriteItem")


def ok(_request: dict[str, Any]) -> dict[str, Any]:
    return {}


class ScriptedClient:
    """Answers each call with the next answer of its script, and keeps the requests."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def _next(self, operation: str, request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append((operation, request))
        return self.answers.pop(0)(request)

    def transact_write_items(self, **request: Any) -> dict[str, Any]:
        return self._next("TransactWriteItems", request)

    def batch_write_item(self, **request: Any) -> dict[str, Any]:
        return self._next("BatchWriteItem", request)


class ScriptedTable:
    """The resource Table: its client, and a put_item that finds the item already there as given
    (`stored`), or, when `stored` is None, the very item put (a retry after a lost answer)."""

    def __init__(self, client: ScriptedClient, stored: dict[str, Any] | None = None) -> None:
        self.meta = type("Meta", (), {"client": client})()
        self.stored = stored

    def put_item(self, **request: Any) -> dict[str, Any]:
        item = self.stored or {name: {"S": str(value)} for name, value in request["Item"].items()}
        raise ClientError(
            {"Error": {"Code": "ConditionalCheckFailedException", "Message": "exists"}, "Item": item},
            "PutItem",
        )


@pytest.fixture(autouse=True)
def no_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger_table.time, "sleep", lambda _seconds: None)


def ledger_on(
    client: ScriptedClient, monkeypatch: pytest.MonkeyPatch, stored: dict[str, Any] | None = None
) -> LedgerStore:
    table = ScriptedTable(client, stored)
    monkeypatch.setattr(ledger_table.clients, "dynamodb_table", lambda _name: table)
    return LedgerStore("ledger")


def claimed_keys(request: dict[str, Any]) -> list[str]:
    return [item["Put"]["Item"]["sk"] for item in request["TransactItems"]]


def test_a_claim_transaction_cancelled_by_a_conflict_is_tried_again_and_claims_them_all(monkeypatch):
    client = ScriptedClient(cancelled("None", "TransactionConflict", "None"), ok)

    claims = ledger_on(client, monkeypatch).claim_many(KEYS)

    assert claims.claimed == KEYS and claims.taken == {}
    first, again = (request for _, request in client.requests)
    assert claimed_keys(first) == claimed_keys(again)
    assert all("open_claim" in item["Put"]["Item"] for item in again["TransactItems"])


def test_claims_found_taken_are_left_out_and_the_rest_claimed_in_one_more_transaction(monkeypatch):
    stored = {
        "pk": {"S": "TENANT#acme"},
        "sk": {"S": "reminder#WO-1#2026-11-24"},
        "state": {"S": "sent"},
        "claimed_at": {"N": "1796000000"},
        "unlogged": {"M": {"id": {"S": "E1"}, "attempts": {"N": "1"}, "error": {"NULL": True}}},
    }
    client = ScriptedClient(cancelled("None", "ConditionalCheckFailed", "None", item=stored), ok)

    claims = ledger_on(client, monkeypatch).claim_many(KEYS)

    assert claims.claimed == [KEYS[0], KEYS[2]]
    assert claims.taken == {
        KEYS[1]: Taken(
            state="sent", claimed_at=1796000000, unlogged={"id": "E1", "attempts": 1, "error": None}
        )
    }
    assert len(claimed_keys(client.requests[1][1])) == 2


def test_a_claim_transaction_that_stays_cancelled_by_conflicts_claims_nothing_and_says_so(monkeypatch):
    client = ScriptedClient(*[cancelled("TransactionConflict", "None", "None")] * CLAIM_ATTEMPTS)

    with pytest.raises(ServiceUnavailable, match="busy"):
        ledger_on(client, monkeypatch).claim_many(KEYS)

    assert len(client.requests) == CLAIM_ATTEMPTS


def test_a_throttled_claim_transaction_claims_nothing_and_says_so(monkeypatch):
    client = ScriptedClient(throttled)

    with pytest.raises(ServiceUnavailable):
        ledger_on(client, monkeypatch).claim_many(KEYS)

    assert len(client.requests) == 1  # nothing claimed: the records come back, and try again then


def test_a_single_claim_that_finds_its_own_item_after_a_lost_answer_is_claimed(monkeypatch):
    claims = ledger_on(ScriptedClient(), monkeypatch).claim_many(KEYS[:1])

    assert claims.claimed == KEYS[:1] and claims.taken == {}


def test_a_single_claim_that_finds_another_claim_is_taken(monkeypatch):
    stored = {"state": {"S": "sending"}, "claimed_at": {"N": "5"}, "claim_id": {"S": "someone-else"}}

    claims = ledger_on(ScriptedClient(), monkeypatch, stored).claim_many(KEYS[:1])

    assert claims.claimed == [] and claims.taken == {KEYS[0]: Taken(state="sending", claimed_at=5)}


def unprocessed(count: int) -> Answer:
    """A BatchWriteItem that leaves the last `count` items of its request unprocessed."""

    def answer(request: dict[str, Any]) -> dict[str, Any]:
        [(table, items)] = request["RequestItems"].items()
        return {"UnprocessedItems": {table: items[len(items) - count :]} if count else {}}

    return answer


def test_a_batch_write_tries_its_unprocessed_items_again_and_returns_those_never_written(monkeypatch):
    items = [{"pk": "TENANT#acme", "sk": f"EMAIL#{n}"} for n in range(30)]
    client = ScriptedClient(
        unprocessed(2), unprocessed(1), throttled, ok, unprocessed(5), *[unprocessed(5)] * 3
    )

    left = batch_put(client, "log", items)

    sizes = [len(request["RequestItems"]["log"]) for _, request in client.requests]
    assert sizes == [25, 2, 1, 1, 5, 5, 5, 5]  # 25 then 5: each call's leftovers again, four tries
    assert left == {("TENANT#acme", f"EMAIL#{n}") for n in range(25, 30)}


def test_finishing_writes_whole_items_without_open_claim_and_returns_the_keys_not_written(monkeypatch):
    client = ScriptedClient(*[unprocessed(1)] * 4)
    finishes = [Finish(KEYS[0], "sent", 100), Finish(KEYS[1], "failed", 100, unlogged={"id": "E2"})]

    left = ledger_on(client, monkeypatch).finish_many(finishes)

    assert left == [KEYS[1]]
    written = [r["PutRequest"]["Item"] for r in client.requests[0][1]["RequestItems"]["ledger"]]
    assert [(i["state"], i.get("unlogged"), "open_claim" in i) for i in written] == [
        ("sent", None, False),
        ("failed", {"id": "E2"}, False),
    ]
    assert written[0]["expires_at"] == 100 + ledger_table.LEDGER_DAYS * 86400
