"""In-memory fakes of the data access layer (mailer.dal): the same public methods, with the same
signatures and the same answers, and no AWS.

Each fake keeps what the real store would keep, as the real store would see it:

- reads hand out copies, so changing what a read returned changes nothing stored;
- models are stored as the JSON the real store writes, and validated again when read;
- conditional writes hold or fail as their DynamoDB conditions would (the ledger's claim, release
  and finish; an OAuth status change; a work order written on the version it read);
- lists come back in the order DynamoDB gives them (sort key order, the sent log newest first).

`tests/unit/test_fakes.py` checks that each fake has every public method of the real class with
the same signature.

Faults: `store.fail("get")` makes every later call of `get` raise ServiceUnavailable (or the error
given), `when=` narrows it to the calls whose arguments (positional, as the method was given them)
satisfy it, and `store.heal()` takes every fault back. A real
store turns each AWS error into ServiceUnavailable, so that is what a fake raises by default. The
outbox queue, which never raises for a refused batch, answers a fault by refusing the messages.

Batch methods: a batch read or write goes item by item through the single-item method (`get_many`
through `get`, the sent log's `put_many` through `put`), so a fault or an override of that method
meets the batch's items as it would single calls. A batch write never raises, as the real one: a
faulted item comes back unwritten, as DynamoDB's unprocessed items; a fault on the batch method
itself (`when=` gets one item's arguments) refuses the items it selects. A transaction
(`claim_many` of several keys, `put_if_versions`) is all or none, as DynamoDB's.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, overload

from pydantic import BaseModel

from mailer.dal import keys
from mailer.dal.attachments_bucket import PresignedUpload, StoredUpload
from mailer.dal.keys import tenant_pk
from mailer.dal.ledger_table import LEDGER_DAYS, TRANSACTION_ITEMS, Claims, Finish, LedgerKey, Taken
from mailer.dal.secret_store import SecretMissing
from mailer.dal.sent_log_table import decode_cursor, encode_cursor
from mailer.errors import ServiceUnavailable
from mailer.sent_log.models import SentLogEntry
from mailer.tracking.models import Timeline
from mailer.work_orders.models import WorkOrder, reminder_start_date

M = TypeVar("M", bound=BaseModel)
Condition = Callable[..., bool]


class Faults:
    """Fault injection shared by the fakes, and a record of the calls each one received."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._faults: dict[str, tuple[BaseException, Condition | None]] = {}

    def fail(self, method: str, error: BaseException | None = None, *, when: Condition | None = None) -> None:
        """Every later call of `method` (those whose arguments satisfy `when`) raises `error`."""
        if not callable(getattr(self, method, None)):
            raise AttributeError(f"{type(self).__name__} has no method {method}")
        injected = error or ServiceUnavailable(f"injected: {type(self).__name__}.{method} is unavailable")
        self._faults[method] = (injected, when)

    def heal(self) -> None:
        self._faults.clear()

    def _faulted(self, method: str, *args: Any) -> BaseException | None:
        self.calls.append((method, args))
        fault = self._faults.get(method)
        if fault is None:
            return None
        error, when = fault
        return error if when is None or when(*args) else None

    def _call(self, method: str, *args: Any) -> None:
        error = self._faulted(method, *args)
        if error is not None:
            raise error

    def called(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)


# --- settings table --------------------------------------------------------------------------------

_HIDDEN = ("pk", "sk", "gsi1pk", "gsi1sk")  # the table's own keys, never handed out


class SettingsStore(Faults):
    """Per-tenant configuration items (settings, templates, automations) by sort key."""

    def __init__(self, table_name: str = "settings") -> None:
        super().__init__()
        self.table_name = table_name
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def get(self, tenant_id: str, sort_key: str) -> dict[str, Any] | None:
        self._call("get", tenant_id, sort_key)
        item = self.items.get((tenant_id, sort_key))
        return None if item is None else _without_keys(item)

    def list_prefix(self, tenant_id: str, prefix: str) -> dict[str, dict[str, Any]]:
        self._call("list_prefix", tenant_id, prefix)
        return {
            sort_key[len(prefix) :]: _without_keys(item)
            for (tenant, sort_key), item in sorted(self.items.items())
            if tenant == tenant_id and sort_key.startswith(prefix)
        }

    def tenants_in_index(self, index_pk: str) -> list[str]:
        self._call("tenants_in_index", index_pk)
        return sorted(item["gsi1sk"] for item in self.items.values() if item.get("gsi1pk") == index_pk)

    def put(self, tenant_id: str, sort_key: str, data: dict[str, Any]) -> None:
        self._call("put", tenant_id, sort_key, data)
        self.items[(tenant_id, sort_key)] = copy.deepcopy({k: v for k, v in data.items() if v is not None})

    def set_oauth_status(self, tenant_id: str, sort_key: str, status: str, *, expected: str) -> bool:
        self._call("set_oauth_status", tenant_id, sort_key, status, expected)
        item = self.items.get((tenant_id, sort_key))
        oauth = item.get("oauth") if item else None
        if not isinstance(oauth, dict) or oauth.get("status") != expected:
            return False
        oauth["status"] = status
        return True

    def delete(self, tenant_id: str, sort_key: str) -> bool:
        self._call("delete", tenant_id, sort_key)
        return self.items.pop((tenant_id, sort_key), None) is not None


def _without_keys(item: dict[str, Any]) -> dict[str, Any]:
    return {k: copy.deepcopy(v) for k, v in item.items() if k not in _HIDDEN}


# --- Secrets Manager ---------------------------------------------------------------------------------


class SecretStore(Faults):
    """Passwords by secret name, read through a cache as Powertools' SecretsProvider reads them: a
    value read is served from the cache for `max_age_seconds` unless `force_fetch`; a write or a
    delete clears the cache. `change` plays another container writing a new value (this one's cache
    keeps the old value)."""

    def __init__(
        self,
        prefix: str = "tests/mail-settings",
        *,
        max_age_seconds: int = 300,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefix = prefix.rstrip("/")
        self.max_age_seconds = max_age_seconds
        self.clock = clock
        self.values: dict[str, str] = {}  # what Secrets Manager holds
        self._versions: dict[tuple[str, str], str] = {}
        self._cache: dict[str, tuple[str, float]] = {}

    def name_for(self, tenant_id: str, profile_key: str) -> str:
        return f"{self.prefix}/{tenant_id}/{profile_key}"

    def get(self, name: str, *, force_fetch: bool = False) -> str:
        self._call("get", name)
        cached = self._cache.get(name)
        if cached and not force_fetch and self.clock() - cached[1] < self.max_age_seconds:
            return cached[0]
        if name not in self.values:
            raise SecretMissing(
                "The saved password for these settings is gone. Save the settings again with the password."
            )
        self._cache[name] = (self.values[name], self.clock())
        return self.values[name]

    def put(self, name: str, password: str) -> None:
        self._call("put", name)
        self.values[name] = password
        self._cache.clear()

    def put_version(self, name: str, value: str, version_token: str) -> bool:
        self._call("put_version", name)
        written = self._versions.get((name, version_token))
        if written is not None and written != value:
            self._cache.clear()
            return False
        self._versions[(name, version_token)] = value
        self.values[name] = value
        self._cache.clear()
        return True

    def delete(self, name: str) -> None:
        self._call("delete", name)
        self.values.pop(name, None)
        self._cache.clear()

    def change(self, name: str, value: str) -> None:
        """The secret changed elsewhere: Secrets Manager has the new value, this cache the old one."""
        self.values[name] = value


# --- sent log ------------------------------------------------------------------------------------------


class SentLogStore(Faults):
    """Sent-log entries per tenant, newest first, by document, by work order or all of them."""

    def __init__(self, table_name: str = "sent-log", *, retention_days: int = 90) -> None:
        super().__init__()
        self.table_name = table_name
        self.retention_days = retention_days
        self.items: dict[tuple[str, str], dict[str, Any]] = {}

    def put(self, tenant_id: str, entry: SentLogEntry, request: dict[str, Any] | None = None) -> None:
        self._call("put", tenant_id, entry, request)
        created = datetime.fromisoformat(entry.created_at.replace("Z", "+00:00"))
        item: dict[str, Any] = {
            "expires_at": int((created + timedelta(days=self.retention_days)).timestamp()),
            "entry": entry.model_dump(mode="json", by_alias=True),
        }
        if request is not None:
            item["request"] = copy.deepcopy(request)
        self.items[(tenant_id, entry.id)] = item

    def put_many(
        self,
        entries: Sequence[tuple[str, SentLogEntry]],
        requests: Mapping[str, dict[str, Any]] | None = None,
    ) -> list[tuple[str, SentLogEntry]]:
        left: list[tuple[str, SentLogEntry]] = []
        for tenant_id, entry in dict(((t, e.id), (t, e)) for t, e in entries).values():
            if self._faulted("put_many", tenant_id, entry) is not None:
                left.append((tenant_id, entry))
                continue
            try:
                self.put(tenant_id, entry, (requests or {}).get(entry.id))
            except Exception:  # noqa: BLE001 - a faulted put is an unprocessed item, never an error
                left.append((tenant_id, entry))
        return left

    def get(self, tenant_id: str, entry_id: str) -> SentLogEntry | None:
        self._call("get", tenant_id, entry_id)
        found = self.get_with_request(tenant_id, entry_id)
        return found[0] if found else None

    def get_with_request(
        self, tenant_id: str, entry_id: str
    ) -> tuple[SentLogEntry, dict[str, Any] | None] | None:
        self._call("get_with_request", tenant_id, entry_id)
        item = self.items.get((tenant_id, entry_id))
        if item is None:
            return None
        request = copy.deepcopy(item["request"]) if "request" in item else None
        return SentLogEntry.model_validate(item["entry"]), request

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
        """Newest first (ids sort by creation time). A cursor comes with a page when more entries
        follow it, as moto answers (DynamoDB may also hand one out for a page that is exactly full)."""
        self._call("list", tenant_id, document, work_order_id, limit, cursor)
        pk = tenant_pk(tenant_id)
        entries = [
            SentLogEntry.model_validate(item["entry"])
            for (tenant, _), item in self.items.items()
            if tenant == tenant_id
        ]
        if document:
            wanted = keys.document_index_pk(tenant_id, *document)
            entries = [e for e in entries if e.document and _document_pk(tenant_id, e) == wanted]
        elif work_order_id:
            entries = [e for e in entries if e.work_order_id == work_order_id]
        if delivery_status:
            entries = [e for e in entries if e.delivery_status == delivery_status]
        if status:
            entries = [e for e in entries if e.status == status]
        entries.sort(key=lambda e: e.id, reverse=True)
        if cursor:
            after = decode_cursor(cursor, pk)["sk"][len(keys.EMAIL_PREFIX) :]
            entries = [e for e in entries if e.id < after]
        page = entries[:limit]
        if len(entries) <= limit:
            return page, None
        return page, encode_cursor(_page_key(tenant_id, page[-1], document, work_order_id))

    def find_message(self, message_id: str) -> list[tuple[str, str]]:
        self._call("find_message", message_id)
        wanted = keys.message_index_pk(message_id)
        return [
            (tenant, entry_id)
            for (tenant, entry_id), item in self.items.items()
            if item["entry"].get("message_id")
            and keys.message_index_pk(item["entry"]["message_id"]) == wanted
        ][:10]

    def change_timeline(
        self, tenant_id: str, entry_id: str, change: Callable[[Timeline], Timeline | None]
    ) -> SentLogEntry | None:
        self._call("change_timeline", tenant_id, entry_id)
        item = self.items.get((tenant_id, entry_id))
        if item is None:
            return None
        entry = SentLogEntry.model_validate(item["entry"])
        changed = change(
            Timeline(status=entry.delivery_status, events=entry.events, keys=item.get("keys", []))
        )
        if changed is None:
            return entry
        entry = entry.model_copy(update={"delivery_status": changed.status, "events": changed.events})
        item["entry"] = entry.model_dump(mode="json", by_alias=True)
        item["keys"] = list(changed.keys)
        return entry


def _document_pk(tenant_id: str, entry: SentLogEntry) -> str:
    assert entry.document is not None
    return keys.document_index_pk(tenant_id, entry.document.get("type"), entry.document.get("number"))


def _page_key(
    tenant_id: str, last: SentLogEntry, document: tuple[str, str] | None, work_order_id: str | None
) -> dict[str, str]:
    """The LastEvaluatedKey DynamoDB gives: the table's keys, and the index's when one was queried."""
    key = {"pk": tenant_pk(tenant_id), "sk": keys.email_sk(last.id)}
    if document:
        key |= {"gsi1pk": _document_pk(tenant_id, last), "gsi1sk": last.id}
    elif work_order_id:
        key |= {"gsi2pk": keys.work_order_index_pk(tenant_id, work_order_id), "gsi2sk": last.id}
    return key


# --- work orders ---------------------------------------------------------------------------------------


class WorkOrderStore(Faults):
    """Work orders per tenant, with the sparse index of those due a reminder, by start date.

    Every write counts the version up (an item without one, stored before versions, is 0). `put`
    with `expected_version` writes only while the stored version is that one, else returns None, as
    the real store's conditional PutItem; without it, it takes the next version, as its UpdateItem.
    """

    def __init__(self, table_name: str = "work-orders") -> None:
        super().__init__()
        self.table_name = table_name
        self.items: dict[tuple[str, str], dict[str, Any]] = {}  # the work order as stored (JSON)
        self.reminder_index: dict[tuple[str, str], str] = {}  # (tenant, id) -> start date

    def get(self, tenant_id: str, work_order_id: str) -> WorkOrder | None:
        self._call("get", tenant_id, work_order_id)
        item = self.items.get((tenant_id, work_order_id))
        return WorkOrder.model_validate(item) if item is not None else None

    @overload
    def put(self, tenant_id: str, work_order: WorkOrder) -> WorkOrder: ...

    @overload
    def put(self, tenant_id: str, work_order: WorkOrder, *, expected_version: int) -> WorkOrder | None: ...

    def put(
        self, tenant_id: str, work_order: WorkOrder, *, expected_version: int | None = None
    ) -> WorkOrder | None:
        self._call("put", tenant_id, work_order, expected_version)
        if expected_version is not None and not self._at_version(tenant_id, work_order.id, expected_version):
            return None
        return self._write(tenant_id, work_order)

    def get_many(self, ids: Iterable[tuple[str, str]]) -> dict[tuple[str, str], WorkOrder]:
        wanted = set(ids)
        self._call("get_many", wanted)
        found = {key: self.get(*key) for key in sorted(wanted)}
        return {key: work_order for key, work_order in found.items() if work_order is not None}

    def put_if_versions(self, writes: Sequence[tuple[str, WorkOrder, int]]) -> list[WorkOrder] | None:
        self._call("put_if_versions", writes)
        if len(writes) > TRANSACTION_ITEMS:
            raise ValueError(f"at most {TRANSACTION_ITEMS} work orders at once")
        if not all(self._at_version(t, w.id, expected) for t, w, expected in writes):
            return None
        return [self._write(t, w) for t, w, _ in writes]

    def _at_version(self, tenant_id: str, work_order_id: str, expected_version: int) -> bool:
        stored = self.items.get((tenant_id, work_order_id))
        return stored is not None and int(stored.get("version", 0)) == expected_version

    def _write(self, tenant_id: str, work_order: WorkOrder) -> WorkOrder:
        key = (tenant_id, work_order.id)
        stored = self.items.get(key)
        version = (int(stored.get("version", 0)) if stored is not None else 0) + 1
        self.items[key] = work_order.model_dump(mode="json") | {"version": version}
        start_date = reminder_start_date(work_order)
        if start_date:
            self.reminder_index[key] = start_date
        else:
            self.reminder_index.pop(key, None)
        return WorkOrder.model_validate(self.items[key])

    def due(self, tenant_id: str, start_date: str, page_size: int = 100) -> Iterator[WorkOrder]:
        """The work orders starting on `start_date` that may get a reminder, in id order, lazily."""
        self._call("due", tenant_id, start_date)
        due = sorted(i for (t, i), day in self.reminder_index.items() if t == tenant_id and day == start_date)
        for work_order_id in due:
            item = self.items.get((tenant_id, work_order_id))
            if item is not None:
                yield WorkOrder.model_validate(item)


# --- the send ledger -------------------------------------------------------------------------------------


class LedgerStore(Faults):
    """One item per (tenant, automation, work order, occurrence): sending -> sent | failed.

    claim: only when no item exists. release: only from `sending` (else nothing happens). finish:
    unconditional, as the real UpdateItem (which creates the item when it is missing). claim_many:
    one key is `claim`; several are one transaction that claims those not held. finish_many: each
    item overwritten whole, as the real BatchWriteItem's puts.
    """

    def __init__(self, table_name: str = "ledger", *, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.table_name = table_name
        self.clock = clock
        self.items: dict[LedgerKey, dict[str, Any]] = {}

    def claim(self, key: LedgerKey) -> bool:
        self._call("claim", key)
        if key in self.items:
            return False
        now = int(self.clock())
        self.items[key] = {"state": "sending", "claimed_at": now, "expires_at": now + LEDGER_DAYS * 86400}
        return True

    def release(self, key: LedgerKey) -> None:
        self._call("release", key)
        if self.items.get(key, {}).get("state") == "sending":
            del self.items[key]

    def finish(self, key: LedgerKey, state: str) -> None:
        self._call("finish", key, state)
        self.items.setdefault(key, {})["state"] = state

    def mark_unknown(self, key: LedgerKey, claimed_before: int) -> bool:
        self._call("mark_unknown", key, claimed_before)
        item = self.items.get(key)
        if (
            not item
            or item.get("state") != "sending"
            or item.get("claimed_at", claimed_before) >= claimed_before
        ):
            return False
        item["state"] = "unknown"
        return True

    def stale(self, claimed_before: int, limit: int = 500) -> list[LedgerKey]:
        self._call("stale", claimed_before, limit)
        return [key for key, _ in self._open_claims(claimed_before, limit)]

    def stale_claims(self, claimed_before: int, limit: int = 500) -> list[tuple[LedgerKey, int]]:
        self._call("stale_claims", claimed_before, limit)
        return self._open_claims(claimed_before, limit)

    def _open_claims(self, claimed_before: int, limit: int) -> list[tuple[LedgerKey, int]]:
        open_claims = [
            (int(item["claimed_at"]), key)
            for key, item in self.items.items()
            if item.get("state") == "sending" and item.get("claimed_at", claimed_before) < claimed_before
        ]
        return [(key, claimed_at) for claimed_at, key in sorted(open_claims)[:limit]]

    def count_sent(self, tenant_id: str, automation: str, record_id: str) -> int:
        self._call("count_sent", tenant_id, automation, record_id)
        return sum(
            1
            for (t, a, r, _), item in self.items.items()
            if (t, a, r) == (tenant_id, automation, record_id) and item.get("state") == "sent"
        )

    def state(self, key: LedgerKey) -> str | None:
        self._call("state", key)
        item = self.items.get(key)
        return item.get("state") if item else None

    def existing(self, keys: Iterable[LedgerKey]) -> set[LedgerKey]:
        wanted = set(keys)
        self._call("existing", wanted)
        return {key for key in wanted if key in self.items}

    def claim_many(self, keys: Sequence[LedgerKey]) -> Claims:
        pending = list(dict.fromkeys(keys))
        if len(pending) > TRANSACTION_ITEMS:
            raise ValueError(f"at most {TRANSACTION_ITEMS} claims at once")
        if len(pending) == 1:
            [key] = pending
            if self.claim(key):
                return Claims(claimed=[key], taken={}, claimed_at=self.items[key]["claimed_at"])
            return Claims(claimed=[], taken={key: self._taken(key)}, claimed_at=int(self.clock()))
        self._call("claim_many", pending)
        now = int(self.clock())
        taken = {key: self._taken(key) for key in pending if key in self.items}
        claimed = [key for key in pending if key not in taken]
        for key in claimed:
            self.items[key] = {"state": "sending", "claimed_at": now, "expires_at": now + LEDGER_DAYS * 86400}
        return Claims(claimed=claimed, taken=taken, claimed_at=now)

    def _taken(self, key: LedgerKey) -> Taken:
        item = self.items[key]
        unlogged = item.get("unlogged")
        return Taken(
            state=item.get("state", "sending"),
            claimed_at=int(item.get("claimed_at", 0)),
            unlogged=copy.deepcopy(unlogged) if unlogged is not None else None,
        )

    def finish_many(self, finishes: Sequence[Finish]) -> list[LedgerKey]:
        left: list[LedgerKey] = []
        for finish in finishes:
            if self._faulted("finish_many", finish) is not None:
                left.append(finish.key)
                continue
            item: dict[str, Any] = {
                "state": finish.state,
                "claimed_at": finish.claimed_at,
                "expires_at": finish.claimed_at + LEDGER_DAYS * 86400,
            }
            if finish.unlogged is not None:
                item["unlogged"] = copy.deepcopy(finish.unlogged)
            self.items[finish.key] = item
        return left


# --- the outbox queue ------------------------------------------------------------------------------------


class OutboxQueue(Faults):
    """Messages waiting for the worker, as the JSON bodies SQS would hold. A fault on `send` is SQS
    refusing: the messages come back as not taken (`send_one` then raises), as from the real queue."""

    def __init__(self, queue_url: str = "https://sqs.local/outbox") -> None:
        super().__init__()
        self.queue_url = queue_url
        self.bodies: list[str] = []
        self.delays: list[int] = []  # each body's DelaySeconds

    def send(self, messages: Sequence[M], delay_seconds: int = 0) -> list[M]:
        if self._faulted("send", messages) is not None:
            return list(messages)
        self.bodies.extend(m.model_dump_json() for m in messages)
        self.delays.extend(delay_seconds for _ in messages)
        return []

    def send_one(self, message: BaseModel) -> None:
        if self.send([message]):
            raise ServiceUnavailable("The email could not be queued; try again.")

    def messages(self, model: type[M]) -> list[M]:
        """What is waiting, as `model`s (the worker's OutboxMessage)."""
        return [model.model_validate_json(body) for body in self.bodies]


# --- attachments -----------------------------------------------------------------------------------------


class AttachmentStore(Faults):
    """Uploaded files under <tenant>/<upload id>/<file name>, in a bucket that keeps versions. `put_object`
    plays the browser's PUT to the presigned address (each PUT a new version), `expire` the bucket's
    lifecycle rule (the current version goes, as under a delete marker)."""

    def __init__(self, bucket: str = "attachments", *, url_ttl_seconds: int = 900) -> None:
        super().__init__()
        self.bucket = bucket
        self.url_ttl_seconds = url_ttl_seconds
        self.objects: dict[str, tuple[bytes, str]] = {}  # the current version of each key
        self.versions: dict[tuple[str, str], tuple[bytes, str, int | None]] = {}  # body, type, declared
        self._current: dict[str, str] = {}  # key -> its current version id

    def presign_upload(
        self, tenant_id: str, upload_id: str, filename: str, content_type: str, size: int
    ) -> PresignedUpload:
        self._call("presign_upload", tenant_id, upload_id, filename, content_type, size)
        key = f"{tenant_id}/{upload_id}/{filename}"
        expires = datetime.now(UTC) + timedelta(seconds=self.url_ttl_seconds)
        return PresignedUpload(
            url=f"https://{self.bucket}.s3.local/{key}",
            headers={
                "Content-Type": content_type,
                "Content-Length": str(size),
                "x-amz-meta-declared-size": str(size),
            },
            expires_at=expires.isoformat(timespec="seconds").replace("+00:00", "Z"),
        )

    def find(self, tenant_id: str, upload_id: str, version_id: str | None = None) -> StoredUpload | None:
        self._call("find", tenant_id, upload_id, version_id)
        prefix = f"{tenant_id}/{upload_id}/"
        for key in sorted(self.objects):
            if key.startswith(prefix):
                version = version_id or self._current[key]
                if (key, version) not in self.versions:
                    return None
                body, _, declared = self.versions[(key, version)]
                return StoredUpload(
                    key=key,
                    filename=key[len(prefix) :],
                    size=len(body),
                    declared_size=declared,
                    version_id=version,
                    etag=_etag(body),
                )
        return None

    def read(self, upload: StoredUpload) -> tuple[bytes, str] | None:
        self._call("read", upload)
        if upload.version_id is None:
            return self.objects.get(upload.key)
        kept = self.versions.get((upload.key, upload.version_id))
        return (kept[0], kept[1]) if kept else None

    def delete(self, upload: StoredUpload) -> None:
        self._call("delete", upload)
        if upload.version_id is None:
            self.objects.pop(upload.key, None)
            return
        self.versions.pop((upload.key, upload.version_id), None)
        if self._current.get(upload.key) == upload.version_id:  # the one before it is current again
            left = [version for key, version in self.versions if key == upload.key]
            self.objects.pop(upload.key, None)
            self._current.pop(upload.key, None)
            if left:
                body, content_type, _ = self.versions[(upload.key, left[-1])]
                self.objects[upload.key] = (body, content_type)
                self._current[upload.key] = left[-1]

    def put_object(
        self,
        tenant_id: str,
        upload_id: str,
        filename: str,
        body: bytes,
        content_type: str,
        declared_size: int | None = None,
    ) -> StoredUpload:
        key = f"{tenant_id}/{upload_id}/{filename}"
        version = f"v{len(self.versions) + 1}"
        self.objects[key] = (body, content_type)
        self.versions[(key, version)] = (body, content_type, declared_size)
        self._current[key] = version
        return StoredUpload(
            key=key,
            filename=filename,
            size=len(body),
            declared_size=declared_size,
            version_id=version,
            etag=_etag(body),
        )

    def expire(self, upload: StoredUpload) -> None:
        self.objects.pop(upload.key, None)


def _etag(body: bytes) -> str:
    """S3's ETag of an object put in one request: the MD5 of its bytes, quoted."""
    return f'"{hashlib.md5(body).hexdigest()}"'  # noqa: S324 - not for security; S3's own choice
