"""The in-memory fakes (tests/support/fakes.py) answer as the real stores do on moto.

Each case runs the same calls against the real store, on the template's tables, and against its
fake, and compares every answer: the ledger's conditional claim, release and finish, a work order's
versions and its conditional write, sort orders, paging, what a read leaves out, and the errors;
and the outbox worker's batch methods: claims together, outcomes together, work orders read and
marked together, sent-log entries written together.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from mailer.dal import keys
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.dal.ledger_table import Claims, Finish, LedgerStore
from mailer.dal.secret_store import SecretMissing, SecretStore
from mailer.dal.sent_log_table import SentLogStore
from mailer.dal.settings_table import SettingsStore
from mailer.dal.work_orders_table import WorkOrderStore
from mailer.errors import InvalidInput
from mailer.ids import new_id
from mailer.sent_log.models import SentLogEntry
from mailer.work_orders.models import WorkOrder
from tests.support import fakes
from tests.support.factories import RUN_DATE, TOMORROW, stored_work_order

Scenario = Callable[[Any], list[Any]]


def plain(value: Any) -> Any:
    """Answers made comparable: models as their JSON, iterators as lists, errors as their type."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, set):
        return sorted(plain(v) for v in value)
    return value


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return plain(call())
    except Exception as exc:  # noqa: BLE001 - the error is the answer being compared
        return f"raises {type(exc).__name__}"


@pytest.fixture
def env(aws, function_env) -> dict[str, str]:
    return dict(os.environ)


# --- the ledger ----------------------------------------------------------------------------------------

KEY = ("acme", "reminder", "WO-1", TOMORROW.isoformat())
OTHER = ("acme", "reminder", "WO-2", TOMORROW.isoformat())
STALE = ("acme", "confirmation", "WO#3", "status:en_route:v2")  # a record id may hold a `#`


def ledger_scenario(ledger: Any) -> list[Any]:
    return [
        outcome(lambda: ledger.claim(KEY)),
        outcome(lambda: ledger.claim(KEY)),  # claimed: a second claim fails
        outcome(lambda: ledger.state(KEY)),
        outcome(lambda: ledger.release(KEY)),
        outcome(lambda: ledger.state(KEY)),  # released: gone
        outcome(lambda: ledger.claim(KEY)),
        outcome(lambda: ledger.finish(KEY, "sent")),
        outcome(lambda: ledger.release(KEY)),  # only a claim in `sending` is given back
        outcome(lambda: ledger.state(KEY)),
        outcome(lambda: ledger.claim(KEY)),  # sent: never claimed again
        outcome(lambda: ledger.existing([KEY, OTHER])),
        outcome(lambda: ledger.finish(OTHER, "failed")),  # UpdateItem writes a missing item
        outcome(lambda: ledger.state(OTHER)),
        outcome(lambda: ledger.existing([KEY, OTHER, ("other", "reminder", "WO-1", "x")])),
        outcome(lambda: ledger.claim(STALE)),
        outcome(lambda: ledger.stale(int(time.time()) - 3600)),  # claimed just now: not stale yet
        outcome(lambda: ledger.stale(int(time.time()) + 60)),  # the open claim; sent and failed are not
        outcome(lambda: ledger.mark_unknown(STALE, int(time.time()) - 3600)),  # too recent
        outcome(lambda: ledger.mark_unknown(STALE, int(time.time()) + 60)),
        outcome(lambda: ledger.mark_unknown(STALE, int(time.time()) + 60)),  # once
        outcome(lambda: ledger.state(STALE)),
        outcome(lambda: ledger.stale(int(time.time()) + 60)),  # no longer open
        outcome(lambda: ledger.mark_unknown(KEY, int(time.time()) + 60)),  # sent stays sent
    ]


def test_the_ledger(env):
    assert ledger_scenario(fakes.LedgerStore()) == ledger_scenario(LedgerStore(env["LEDGER_TABLE"]))


BATCH = [("acme", "reminder", f"WO-{n}", TOMORROW.isoformat()) for n in range(4)]
UNLOGGED = {"id": "E1", "status": "sent", "to": ["c@customer.example"], "attempts": 1, "error": None}


def claims(found: Claims) -> list[Any]:
    """What a worker reads from `claim_many` (the time of the claim is each store's own clock)."""
    return [sorted(found.claimed), {key: (t.state, t.unlogged) for key, t in sorted(found.taken.items())}]


def ledger_batch_scenario(ledger: Any) -> list[Any]:
    now = int(time.time())
    sent = Finish(BATCH[0], "sent", now)
    failed = Finish(BATCH[1], "failed", now, unlogged=UNLOGGED)
    return [
        outcome(lambda: claims(ledger.claim_many(BATCH[:2]))),  # one transaction: both claimed
        outcome(lambda: claims(ledger.claim_many(BATCH[::-1]))),  # cancelled: 0 and 1 taken, 2 and 3 claimed
        outcome(lambda: claims(ledger.claim_many([BATCH[1]]))),  # one key: the conditional put
        outcome(lambda: claims(ledger.claim_many([BATCH[2], BATCH[2]]))),  # the same key twice is one
        outcome(lambda: ledger.finish_many([sent, failed])),
        outcome(lambda: [ledger.state(key) for key in BATCH]),
        outcome(lambda: claims(ledger.claim_many(BATCH[:3]))),  # finished, with the entry kept; open
        outcome(lambda: ledger.stale(now + 60)),  # a finished claim has left the index of open claims
        outcome(lambda: ledger.release(BATCH[2])),
        outcome(lambda: claims(ledger.claim_many([BATCH[2], ("zeta", "thank_you", "WO-1", "s:v1")]))),
        outcome(lambda: ledger.finish_many([Finish(BATCH[1], "failed", now)])),  # the entry written: gone
        outcome(lambda: claims(ledger.claim_many([BATCH[1]]))),
        outcome(lambda: ledger.finish_many([])),
    ]


def test_the_ledger_batch_methods(env):
    real = LedgerStore(env["LEDGER_TABLE"])

    answers = ledger_batch_scenario(fakes.LedgerStore())

    assert answers == ledger_batch_scenario(real)
    assert answers[1] == [[list(k) for k in BATCH[2:]], {k: ("sending", None) for k in BATCH[:2]}]
    assert answers[6][1][BATCH[1]] == ("failed", UNLOGGED)


# --- the settings table ----------------------------------------------------------------------------------


def settings_scenario(store: Any) -> list[Any]:
    store.put("acme", "SETTINGS#company", {"host": "smtp.acme.example", "port": 587, "bcc": None})
    store.put("acme", "AUTOMATION#thank_you", {"active": False, "subject": "Thanks"})
    store.put("acme", "AUTOMATION#reminder", {"active": True, "gsi1pk": "ACTIVE#reminder", "gsi1sk": "acme"})
    store.put("zeta", "AUTOMATION#reminder", {"active": True, "gsi1pk": "ACTIVE#reminder", "gsi1sk": "zeta"})
    store.put("acme", "SETTINGS#user/u1", {"oauth": {"status": "connected", "email": "u1@acme.example"}})
    read = store.get("acme", "SETTINGS#company")
    read["port"] = 25  # changes nothing stored
    return [
        outcome(lambda: store.get("acme", "SETTINGS#company")),
        outcome(lambda: store.get("acme", "SETTINGS#nothing")),
        outcome(lambda: store.get("other", "SETTINGS#company")),
        outcome(lambda: list(store.list_prefix("acme", "AUTOMATION#").items())),
        outcome(lambda: store.tenants_in_index("ACTIVE#reminder")),
        outcome(lambda: store.set_oauth_status("acme", "SETTINGS#user/u1", "lost", expected="connected")),
        outcome(lambda: store.set_oauth_status("acme", "SETTINGS#user/u1", "lost", expected="connected")),
        outcome(lambda: store.set_oauth_status("acme", "SETTINGS#company", "lost", expected="connected")),
        outcome(lambda: store.set_oauth_status("acme", "SETTINGS#none", "lost", expected="connected")),
        outcome(lambda: store.get("acme", "SETTINGS#user/u1")),
        outcome(lambda: store.delete("acme", "SETTINGS#company")),
        outcome(lambda: store.delete("acme", "SETTINGS#company")),
        outcome(lambda: store.get("acme", "SETTINGS#company")),
    ]


def test_the_settings_table(env):
    real = SettingsStore(env["SETTINGS_TABLE"])

    assert settings_scenario(fakes.SettingsStore()) == settings_scenario(real)


# --- the sent log ----------------------------------------------------------------------------------------

IDS = [new_id(now_ms=1_800_000_000_000 + n) for n in range(5)]


def entry(n: int, **fields: Any) -> SentLogEntry:
    return SentLogEntry.model_validate(
        {
            "id": IDS[n],
            "kind": "document" if "document" in fields else "automation",
            "status": "sent",
            "from": "billing@acme.example",
            "to": [f"c{n}@customer.example"],
            "subject": f"Mail {n}",
            "created_at": "2026-11-23T18:00:00Z",
        }
        | fields
    )


def sent_log_scenario(log: Any) -> list[Any]:
    invoice = {"type": "invoice", "number": "INV-1"}
    log.put("acme", entry(0, document=invoice), request={"attachments": [{"upload_id": "U1"}]})
    log.put("acme", entry(1, work_order_id="WO-1", automation="reminder"))
    log.put("acme", entry(2, document=invoice))
    log.put("acme", entry(3, work_order_id="WO-1", automation="confirmation"))
    log.put("zeta", entry(4, work_order_id="WO-1"))
    first, cursor = log.list("acme", limit=3)
    rest, end = log.list("acme", limit=3, cursor=cursor)
    by_order, _ = log.list("acme", work_order_id="WO-1", limit=1)
    _, order_cursor = log.list("acme", work_order_id="WO-1", limit=1)
    return [
        plain(first),
        cursor is not None,
        plain(rest),
        end,
        plain(log.list("acme", document=("invoice", "INV-1"))),
        plain(by_order),
        plain(log.list("acme", work_order_id="WO-1", cursor=order_cursor)),
        plain(log.list("acme", document=("invoice", "INV-2"))),
        outcome(lambda: log.list("zeta", cursor=cursor)),  # another tenant's cursor
        outcome(lambda: log.list("acme", cursor="not-a-cursor")),
        outcome(lambda: log.get_with_request("acme", IDS[0])),
        outcome(lambda: log.get_with_request("acme", IDS[1])),
        outcome(lambda: log.get("acme", IDS[4])),
        outcome(lambda: log.get("zeta", IDS[4])),
    ]


def test_the_sent_log(env):
    real = SentLogStore(env["SENT_LOG_TABLE"], retention_days=90)

    answers = sent_log_scenario(fakes.SentLogStore())

    assert answers == sent_log_scenario(real)
    assert answers[8] == answers[9] == f"raises {InvalidInput.__name__}"


def sent_log_batch_scenario(log: Any) -> list[Any]:
    first, second = entry(0, work_order_id="WO-1"), entry(1, work_order_id="WO-2", automation="reminder")
    many = [("acme", entry(n % 5, subject=f"Mail {n}")) for n in range(30)]  # two calls of 25
    return [
        outcome(lambda: log.put_many([("acme", first), ("zeta", second), ("acme", first)])),
        outcome(lambda: log.put_many([])),
        outcome(lambda: log.put_many([("acme", first)])),  # the same id again: still one entry
        plain(log.list("acme")),
        plain(log.list("zeta", work_order_id="WO-2")),
        outcome(lambda: log.put_many(many)),
        plain(log.list("acme")),  # the last of each id is the one kept
    ]


def test_the_sent_log_batch_write(env):
    real = SentLogStore(env["SENT_LOG_TABLE"], retention_days=90)

    answers = sent_log_batch_scenario(fakes.SentLogStore())

    assert answers == sent_log_batch_scenario(real)
    assert answers[0] == [] and len(answers[3][0]) == 1 and len(answers[6][0]) == 5


# --- work orders -----------------------------------------------------------------------------------------


def work_orders_scenario(store: Any) -> list[Any]:
    for number, changes in [
        ("WO-3", {}),
        ("WO-1", {}),
        ("WO-2", {"customer": {"contact_method": "text"}}),
        ("WO-4", {"start": RUN_DATE}),
        ("WO-5", {}),
        ("WO-5b", {"parent_id": "WO-5"}),
    ]:
        start = changes.pop("start", TOMORROW)
        store.put("acme", stored_work_order(number, start, **changes))
    store.put("acme", stored_work_order("WO-5", TOMORROW, confirmation_status="confirmation_sent"))
    store.put("zeta", stored_work_order("WO-9", TOMORROW))
    return [
        outcome(lambda: [w.id for w in store.due("acme", TOMORROW.isoformat())]),
        outcome(lambda: [w.id for w in store.due("acme", RUN_DATE.isoformat())]),
        outcome(lambda: [w.id for w in store.due("acme", (TOMORROW + timedelta(days=1)).isoformat())]),
        outcome(lambda: store.get("acme", "WO-5")),
        outcome(lambda: store.get("acme", "WO-9")),
    ]


def test_the_work_orders_table(env):
    real = WorkOrderStore(env["WORK_ORDERS_TABLE"])

    assert work_orders_scenario(fakes.WorkOrderStore()) == work_orders_scenario(real)


def versions_scenario(store: Any, store_unversioned: Callable[[WorkOrder], None]) -> list[Any]:
    """Every write counts a version; a write on `expected_version` holds only while it is the stored one."""
    scheduled = stored_work_order("WO-1", TOMORROW)
    en_route = scheduled.model_copy(update={"status": "en_route"})
    store_unversioned(stored_work_order("WO-7", TOMORROW))
    store_unversioned(stored_work_order("WO-8", TOMORROW))
    due = lambda: [w.id for w in store.due("acme", TOMORROW.isoformat())]  # noqa: E731
    return [
        outcome(lambda: store.put("acme", scheduled)),  # version 1
        outcome(lambda: store.put("acme", en_route, expected_version=1)),  # 2, out of the reminder index
        outcome(due),
        outcome(lambda: store.put("acme", en_route, expected_version=1)),  # read before that write: None
        outcome(lambda: store.put("acme", scheduled, expected_version=0)),  # it has a version: None
        outcome(lambda: store.put("acme", scheduled, expected_version=3)),  # not yet 3: None
        outcome(lambda: store.get("acme", "WO-1")),
        outcome(lambda: store.put("acme", scheduled)),  # the sync's write: 3, whatever it read
        outcome(due),
        outcome(lambda: store.put("acme", stored_work_order("WO-2", TOMORROW), expected_version=0)),  # none
        outcome(lambda: store.get("acme", "WO-2")),
        outcome(lambda: store.get("acme", "WO-7")),  # stored before versions: 0
        outcome(lambda: store.put("acme", en_route.model_copy(update={"id": "WO-7"}), expected_version=1)),
        outcome(lambda: store.put("acme", en_route.model_copy(update={"id": "WO-7"}), expected_version=0)),
        outcome(lambda: store.put("acme", stored_work_order("WO-8", TOMORROW, status="in_progress"))),
        outcome(due),
        outcome(lambda: [store.get("acme", n) for n in ("WO-1", "WO-7", "WO-8")]),
    ]


def test_work_order_versions_and_the_conditional_write(env, aws):
    real = WorkOrderStore(env["WORK_ORDERS_TABLE"])
    fake = fakes.WorkOrderStore()
    table = aws.resource("dynamodb").Table(env["WORK_ORDERS_TABLE"])

    def unversioned_in_table(work_order: WorkOrder) -> None:  # as the store wrote it before versions
        table.put_item(
            Item={
                "pk": keys.tenant_pk("acme"),
                "sk": keys.work_order_sk(work_order.id),
                "work_order": work_order.model_dump(mode="json", exclude={"version"}),
                "gsi1pk": keys.reminder_index_pk("acme", TOMORROW.isoformat()),
                "gsi1sk": work_order.id,
            }
        )

    def unversioned_in_fake(work_order: WorkOrder) -> None:
        fake.put("acme", work_order)
        del fake.items[("acme", work_order.id)]["version"]

    answers = versions_scenario(fake, unversioned_in_fake)

    assert answers == versions_scenario(real, unversioned_in_table)
    assert [answers[n] for n in (3, 4, 5, 9, 10, 12)] == [None] * 6
    assert [w["version"] for w in answers[-1]] == [3, 1, 1]


def work_orders_batch_scenario(store: Any, store_unversioned: Callable[[WorkOrder], None]) -> list[Any]:
    """Reads of a batch at once, and writes on the versions read, all or none."""
    for tenant, number, changes in [
        ("acme", "WO-1", {}),
        ("acme", "WO-2", {}),
        ("acme", "WO-2b", {"parent_id": "WO-2"}),
        ("zeta", "WO-1", {}),
    ]:
        store.put(tenant, stored_work_order(number, TOMORROW, **changes))
    store_unversioned(stored_work_order("WO-7", TOMORROW))
    one, two, seven = (store.get("acme", n) for n in ("WO-1", "WO-2", "WO-7"))
    other = store.get("zeta", "WO-1")
    marked = lambda w: w.model_copy(update={"confirmation_status": "confirmation_sent"})  # noqa: E731
    due = lambda: [w.id for w in store.due("acme", TOMORROW.isoformat())]  # noqa: E731
    wanted = [("acme", "WO-1"), ("acme", "WO-2b"), ("zeta", "WO-1"), ("acme", "WO-404"), ("acme", "WO-7")]
    return [
        outcome(lambda: sorted(store.get_many(wanted).items())),
        outcome(lambda: store.get_many([])),
        outcome(lambda: store.put_if_versions([("acme", marked(one), 1), ("acme", marked(seven), 0)])),
        outcome(due),  # marked: out of the reminder index
        outcome(lambda: store.put_if_versions([("zeta", marked(other), 1), ("acme", marked(one), 1)])),
        outcome(lambda: store.get("zeta", "WO-1")),  # WO-1 of acme had moved on: nothing written
        outcome(lambda: store.put_if_versions([("zeta", marked(other), 1), ("acme", marked(two), 1)])),
        outcome(lambda: store.put_if_versions([("acme", marked(seven), 0)])),  # it has a version now
        outcome(due),
        outcome(lambda: sorted(store.get_many(wanted).items())),
    ]


def test_work_orders_read_and_written_as_a_batch(env, aws):
    real = WorkOrderStore(env["WORK_ORDERS_TABLE"])
    fake = fakes.WorkOrderStore()
    table = aws.resource("dynamodb").Table(env["WORK_ORDERS_TABLE"])

    def unversioned_in_table(work_order: WorkOrder) -> None:
        table.put_item(
            Item={
                "pk": keys.tenant_pk("acme"),
                "sk": keys.work_order_sk(work_order.id),
                "work_order": work_order.model_dump(mode="json", exclude={"version"}),
                "gsi1pk": keys.reminder_index_pk("acme", TOMORROW.isoformat()),
                "gsi1sk": work_order.id,
            }
        )

    def unversioned_in_fake(work_order: WorkOrder) -> None:
        fake.put("acme", work_order)
        del fake.items[("acme", work_order.id)]["version"]

    answers = work_orders_batch_scenario(fake, unversioned_in_fake)

    assert answers == work_orders_batch_scenario(real, unversioned_in_table)
    assert [answers[n] for n in (4, 7)] == [None, None]
    assert answers[3] == ["WO-2"] and answers[8] == []


# --- secrets ---------------------------------------------------------------------------------------------


def secrets_scenario(secrets: Any) -> list[Any]:
    name = secrets.name_for("acme", "company")
    return [
        name.endswith("/acme/company"),
        outcome(lambda: secrets.get(name)),
        outcome(lambda: secrets.put(name, "first")),
        outcome(lambda: secrets.get(name)),
        outcome(lambda: secrets.put(name, "second")),
        outcome(lambda: secrets.get(name)),  # a write clears the cache
        outcome(lambda: secrets.delete(name)),
        outcome(lambda: secrets.get(name, force_fetch=True)),
        outcome(lambda: secrets.delete(name)),  # deleting what is gone is fine
    ]


def test_the_secret_store(env):
    real = SecretStore(env["SECRET_PREFIX"])

    answers = secrets_scenario(fakes.SecretStore(env["SECRET_PREFIX"]))

    assert answers == secrets_scenario(real)
    assert answers[1] == answers[7] == f"raises {SecretMissing.__name__}"


# --- attachments -----------------------------------------------------------------------------------------


def test_the_attachment_bucket(env, aws):
    real = AttachmentStore(env["ATTACHMENTS_BUCKET"])
    fake = fakes.AttachmentStore(env["ATTACHMENTS_BUCKET"])
    s3 = aws.client("s3")
    photo, declared = b"\xff\xd8photo", {"declared-size": "8"}
    s3.put_object(Bucket=real.bucket, Key="acme/U1/luis.jpg", Body=photo, ContentType="image/jpeg")
    s3.put_object(Bucket=real.bucket, Key="acme/U2/a.pdf", Body=b"%PDF-1", Metadata=declared)
    s3.put_object(Bucket=real.bucket, Key="acme/U2/a.pdf", Body=b"%PDF-22", Metadata=declared)
    fake.put_object("acme", "U1", "luis.jpg", photo, "image/jpeg")
    fake.put_object("acme", "U2", "a.pdf", b"%PDF-1", "binary/octet-stream", declared_size=8)
    fake.put_object("acme", "U2", "a.pdf", b"%PDF-22", "binary/octet-stream", declared_size=8)

    def scenario(store: Any, expire: Callable[[Any], None], first_version: str) -> list[Any]:
        upload = store.find("acme", "U1")
        replaced = store.find("acme", "U2")
        first = store.find("acme", "U2", first_version)
        answers = [
            replace(upload, version_id=None),  # version ids are S3's own
            upload.version_id is not None and replaced.version_id != first.version_id,
            replace(replaced, version_id=None),
            replace(first, version_id=None),
            store.find("zeta", "U1"),
            store.find("acme", "U3"),
            store.read(upload),
            store.read(first),
            store.presign_upload("acme", "U3", "a.pdf", "application/pdf", 9).headers,
        ]
        store.delete(replaced)  # the current version's bytes go; the one before it is current again
        answers += [store.read(replaced), replace(store.find("acme", "U2"), version_id=None)]
        expire(upload)
        return [*answers, store.find("acme", "U1")]

    versions = s3.list_object_versions(Bucket=real.bucket, Prefix="acme/U2/")["Versions"]
    [real_first] = [v["VersionId"] for v in versions if v["Size"] == len(b"%PDF-1")]
    answers = scenario(fake, fake.expire, "v2")
    assert answers == scenario(
        real, lambda upload: s3.delete_object(Bucket=real.bucket, Key=upload.key), real_first
    )
    assert answers[1] is True and answers[-1] is None
