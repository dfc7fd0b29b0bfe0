"""Invoices in DynamoDB, with two indexes so nothing in a request path or the daily run Scans:

- `by_due` (sparse): only invoices that may be reminded (open, customer emailed at a valid address)
  carry gsi1pk `<pk>#OPEN` and gsi1sk `<due date>#<id>`, so a run reads the open invoices of a
  tenant due in a range of dates, and a paid or void invoice leaves the index with the write that
  says so;
- `by_customer`: every invoice carries gsi2pk `<pk>#CUST#<customer>` and gsi2sk
  `<status>#<due date>#<id>`, so a customer's invoices, or only the open ones, are one Query.

Every write counts a version as work orders do: the sync's write is unconditional and takes the next
version; a write with `expected_version` happens only while the stored version is still that one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any, overload

from boto3.dynamodb.conditions import Key
from botocore.exceptions import BotoCoreError, ClientError

from mailer.billing.models import Invoice, may_be_emailed
from mailer.dal import clients, keys
from mailer.dal.batch_read import get_items
from mailer.dal.keys import tenant_pk
from mailer.errors import ServiceUnavailable

DUE_INDEX = "by_due"
CUSTOMER_INDEX = "by_customer"
VERSION = "version"  # a top-level attribute, beside the invoice's JSON, so conditions can name it
DUE_KEYS = ("gsi1pk", "gsi1sk")
READ_FAILED = "The invoices could not be read; try again shortly."
WRITE_FAILED = "The invoice could not be saved; nothing was changed."


def _key(tenant_id: str, invoice_id: str) -> dict[str, str]:
    return {"pk": tenant_pk(tenant_id), "sk": keys.invoice_sk(invoice_id)}


def _stored(invoice: Invoice) -> dict[str, Any]:
    # JSON form: amounts stay the strings they were sent as, dates ISO strings; no float anywhere.
    return invoice.model_dump(mode="json", exclude={"version"})


def _invoice(item: dict[str, Any]) -> Invoice:
    return Invoice.model_validate(item["invoice"] | {"version": int(item.get(VERSION, 0))})


def index_attributes(tenant_id: str, invoice: Invoice) -> dict[str, str]:
    """The index keys an invoice carries: always by_customer, by_due only while it may be reminded."""
    due = invoice.due_date.isoformat()
    found = {
        "gsi2pk": keys.customer_index_pk(tenant_id, invoice.customer.id),
        "gsi2sk": keys.customer_index_sk(invoice.status, due, invoice.id),
    }
    if may_be_emailed(invoice):
        found |= {
            "gsi1pk": keys.invoice_due_index_pk(tenant_id),
            "gsi1sk": keys.invoice_due_index_sk(due, invoice.id),
        }
    return found


def stored_item(tenant_id: str, invoice: Invoice, version: int) -> dict[str, Any]:
    """The item of an invoice at `version`, with its places in the indexes."""
    return (
        _key(tenant_id, invoice.id)
        | {"invoice": _stored(invoice), VERSION: version}
        | index_attributes(tenant_id, invoice)
    )


class InvoiceStore:
    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _table(self) -> Any:
        return clients.dynamodb_table(self.table_name)

    def get(self, tenant_id: str, invoice_id: str) -> Invoice | None:
        try:
            item = self._table.get_item(Key=_key(tenant_id, invoice_id), ConsistentRead=True).get("Item")
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable("The invoice could not be read; try again shortly.") from None
        return _invoice(item) if item else None

    def get_many(self, ids: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Invoice]:
        """The invoices of these (tenant, invoice id) pairs that exist, read consistently, a hundred
        keys a BatchGetItem call (the worker re-reads a batch's invoices before sending)."""
        wanted = {(tenant_pk(t), keys.invoice_sk(i)): (t, i) for t, i in ids}
        items = get_items(self._table, ({"pk": pk, "sk": sk} for pk, sk in wanted), READ_FAILED)
        return {wanted[(item["pk"], item["sk"])]: _invoice(item) for item in items}

    @overload
    def put(self, tenant_id: str, invoice: Invoice) -> Invoice: ...

    @overload
    def put(self, tenant_id: str, invoice: Invoice, *, expected_version: int) -> Invoice | None: ...

    def put(self, tenant_id: str, invoice: Invoice, *, expected_version: int | None = None) -> Invoice | None:
        """Store the invoice one version past the stored one, with its index keys recomputed, and
        return it as stored. With `expected_version` the write happens only while the stored version
        is still that one (0: no invoice yet); None when another write came first (nothing written)."""
        if expected_version is None:
            return self._put_next_version(tenant_id, invoice)
        return self._put_if_version(tenant_id, invoice, expected_version)

    def _put_next_version(self, tenant_id: str, invoice: Invoice) -> Invoice:
        # One UpdateItem: the increment is DynamoDB's, so two syncs racing each take their own version.
        indexed = index_attributes(tenant_id, invoice)
        names = {"#inv": "invoice", "#v": VERSION}
        values: dict[str, Any] = {":inv": _stored(invoice), ":zero": 0, ":one": 1}
        sets = ["#inv = :inv", "#v = if_not_exists(#v, :zero) + :one"]
        for attribute, value in indexed.items():
            sets.append(f"{attribute} = :{attribute}")
            values[f":{attribute}"] = value
        update = "SET " + ", ".join(sets)
        gone = [a for a in DUE_KEYS if a not in indexed]
        if gone:
            update += " REMOVE " + ", ".join(gone)
        try:
            written = self._table.update_item(
                Key=_key(tenant_id, invoice.id),
                UpdateExpression=update,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
            )["Attributes"]
        except (ClientError, BotoCoreError):
            raise ServiceUnavailable(WRITE_FAILED) from None
        return invoice.model_copy(update={"version": int(written[VERSION])})

    def _put_if_version(self, tenant_id: str, invoice: Invoice, expected_version: int) -> Invoice | None:
        if expected_version:
            condition: dict[str, Any] = {
                "ConditionExpression": "#v = :expected",
                "ExpressionAttributeNames": {"#v": VERSION},
                "ExpressionAttributeValues": {":expected": expected_version},
            }
        else:
            condition = {"ConditionExpression": "attribute_not_exists(pk)"}
        try:
            self._table.put_item(Item=stored_item(tenant_id, invoice, expected_version + 1), **condition)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return None
            raise ServiceUnavailable(WRITE_FAILED) from None
        except BotoCoreError:
            raise ServiceUnavailable(WRITE_FAILED) from None
        return invoice.model_copy(update={"version": expected_version + 1})

    def for_customer(self, tenant_id: str, customer_id: str, status: str | None = None) -> list[Invoice]:
        """A customer's invoices (only those in `status` when given), by status then due date: a
        Query of by_customer, every page."""
        condition = Key("gsi2pk").eq(keys.customer_index_pk(tenant_id, customer_id))
        if status is not None:
            condition &= Key("gsi2sk").begins_with(f"{status}#")
        return list(self._pages({"IndexName": CUSTOMER_INDEX, "KeyConditionExpression": condition}))

    def open_due_between(
        self, tenant_id: str, first: date, last: date, page_size: int = 100
    ) -> Iterator[Invoice]:
        """The tenant's invoices that may be reminded whose due date is from `first` to `last`
        (both included), by due date, page by page: a Query of the sparse by_due index."""
        condition = Key("gsi1pk").eq(keys.invoice_due_index_pk(tenant_id)) & Key("gsi1sk").between(
            f"{first.isoformat()}#", f"{last.isoformat()}#\uffff"
        )
        yield from self._pages(
            {"IndexName": DUE_INDEX, "KeyConditionExpression": condition, "Limit": page_size}
        )

    def _pages(self, query: dict[str, Any]) -> Iterator[Invoice]:
        while True:
            try:
                page = self._table.query(**query)
            except (ClientError, BotoCoreError):
                raise ServiceUnavailable(READ_FAILED) from None
            for item in page.get("Items", []):
                yield _invoice(item)
            if "LastEvaluatedKey" not in page:
                return
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]
