"""The outbox worker (mailer.automations.worker) on in-memory stores: every branch, in milliseconds;
and the status changes that queue its confirmations, when other requests write in between.

The stores are the fakes of tests/support/fakes.py behind the real SettingsService and
AutomationService; sending goes through the real TransportPool to memory transports
(tests/support/transports.py). The same behaviour against moto and real SMTP servers is in
tests/integration/test_automated_email.py and tests/fault/.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from mailer.automations.models import AutomationInput, default_automation
from mailer.automations.outbox import OutboxMessage, SentLogMessage, parse_queued
from mailer.automations.service import AutomationService
from mailer.automations.status import StatusChanges
from mailer.automations.worker import (
    MAX_RECEIVES,
    WRITE_RESERVE_SECONDS,
    Deferred,
    Handled,
    OutboxWorker,
    Outcome,
    RetryLater,
    Settled,
    WorkerDeps,
    send_reserve_seconds,
    why_not_send,
)
from mailer.config import MailerConfig
from mailer.delivery.guard import AddressGuard
from mailer.errors import ServiceUnavailable
from mailer.identity import Caller
from mailer.sent_log.models import SentLogEntry
from mailer.settings.models import SettingsInput
from mailer.settings.service import SettingsService
from mailer.work_orders.models import PHOTO_CID, EmailDecision, StatusChange, StatusChangeResult, WorkOrder
from tests.support.factories import OWNER, RUN_DATE, TOMORROW, company_settings, stored_work_order
from tests.support.fakes import (
    AttachmentStore,
    LedgerStore,
    OutboxQueue,
    SecretStore,
    SentLogStore,
    SettingsStore,
    WorkOrderStore,
)
from tests.support.transports import MemoryPool, MemoryServer, failure

TENANT = "acme"
ACCOUNT = "office@acme.example"
PASSWORD = "Unit-Pa55word"
CUSTOMER = "wo-1@customer.example"
ADMIN = Caller(tenant_id=TENANT, user_id="admin", email="admin@acme.example", is_admin=True)
CONFIG = MailerConfig(
    settings_table="settings",
    sent_log_table="sent-log",
    secret_prefix="tests/mail-settings",
    work_orders_table="work-orders",
    ledger_table="ledger",
)
PHOTO_UPLOAD = "01JCPHOTO0000000000000000A"
PHOTO = b"\xff\xd8\xff\xe0" + b"JFIF-photo" * 20

LOOPBACK_GUARD = AddressGuard.allowing("127.0.0.1/32", "::1/128")  # the memory servers "listen" there


@dataclass
class World:
    """One tenant's stores, the worker of one batch, and the server it sends to."""

    store: SettingsStore
    secrets: SecretStore
    work_orders: WorkOrderStore
    ledger: LedgerStore
    sent_log: SentLogStore
    attachments: AttachmentStore
    server: MemoryServer
    worker: OutboxWorker

    def save_company(self, **changes: Any) -> None:
        body = company_settings(ACCOUNT, PASSWORD, port=587, **changes)
        self.worker.deps.settings.save(ADMIN, "company", SettingsInput.model_validate(body))

    def activate(self, automation: str, **changes: Any) -> None:
        wording = default_automation(automation).model_dump(include={"subject", "body_html", "days_before"})
        body = AutomationInput.model_validate(wording | {"active": True} | changes)
        self.worker.deps.automations.save(ADMIN, automation, body)

    def add_work_order(self, number: str = "WO-1", start=TOMORROW, **changes: Any) -> None:
        self.work_orders.put(TENANT, stored_work_order(number, start, **changes))

    def entries(self) -> list[SentLogEntry]:
        return self.sent_log.list(TENANT)[0]

    @property
    def secret_name(self) -> str:
        return self.secrets.name_for(TENANT, "company")


def reminder(work_order_id: str = "WO-1", occurrence: str = TOMORROW.isoformat()) -> OutboxMessage:
    return OutboxMessage(
        tenant_id=TENANT, automation="reminder", work_order_id=work_order_id, occurrence=occurrence
    )


def status_email(automation: str, work_order_id: str = "WO-1") -> OutboxMessage:
    return OutboxMessage(
        tenant_id=TENANT, automation=automation, work_order_id=work_order_id, occurrence="status-change-1"
    )


@pytest.fixture
def world() -> World:
    store, secrets = SettingsStore(), SecretStore()
    clock = lambda: "2026-11-23T18:00:00Z"  # noqa: E731
    deps = WorkerDeps(
        config=CONFIG,
        settings=SettingsService(store, secrets, clock, guard=LOOPBACK_GUARD),  # type: ignore[arg-type]
        automations=AutomationService(store, clock),  # type: ignore[arg-type]
        work_orders=WorkOrderStore(),  # type: ignore[arg-type]
        ledger=LedgerStore(),  # type: ignore[arg-type]
        sent_log=SentLogStore(),  # type: ignore[arg-type]
        attachments=AttachmentStore(),  # type: ignore[arg-type]
        logger=logging.getLogger("tests.worker"),
    )
    server = MemoryServer()
    worker = OutboxWorker(deps)
    worker.pool = MemoryPool(CONFIG, server)
    return World(
        store,
        secrets,
        deps.work_orders,  # type: ignore[arg-type]
        deps.ledger,  # type: ignore[arg-type]
        deps.sent_log,  # type: ignore[arg-type]
        deps.attachments,  # type: ignore[arg-type]
        server,
        worker,
    )


@pytest.fixture
def ready(world: World) -> World:
    """Company settings saved, the reminder active, WO-1 due tomorrow."""
    world.save_company()
    world.activate("reminder")
    world.add_work_order()
    return world


def text_of(message: Any) -> str:
    return message.message.get_body(("plain",)).get_content()


# --- before the claim: why_not_send ------------------------------------------------------------------


def test_an_inactive_automation_is_skipped_before_any_claim(world: World):
    world.save_company()
    world.add_work_order()  # the reminder was never switched on

    handled = world.worker.handle(reminder())

    assert handled == Handled(Outcome.SKIPPED, "automation inactive")
    assert world.ledger.called("claim") == 0 and world.ledger.items == {}
    assert world.server.accepted == [] and world.entries() == []


def test_a_work_order_gone_is_skipped(world: World):
    world.save_company()
    world.activate("reminder")

    assert world.worker.handle(reminder("WO-404")) == Handled(Outcome.SKIPPED, "work order gone")
    assert world.ledger.items == {} and world.server.accepted == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param({"start": TOMORROW + timedelta(days=2)}, id="rescheduled"),
        pytest.param({"status": "cancelled"}, id="cancelled"),
        pytest.param({"confirmation_status": "confirmed"}, id="confirmed-meanwhile"),
    ],
)
def test_a_reminder_no_longer_due_is_skipped(world: World, change: dict[str, Any]):
    world.save_company()
    world.activate("reminder")
    world.add_work_order(**change)  # changed after the noon run queued it for tomorrow

    assert world.worker.handle(reminder()) == Handled(Outcome.SKIPPED, "no longer due a reminder")
    assert world.ledger.items == {} and world.server.accepted == []


@pytest.mark.parametrize(
    ("customer", "reason"),
    [
        ({"email": "not an address"}, "the customer has no valid email address"),
        ({"email": None}, "the customer has no valid email address"),
        ({"contact_method": "text"}, "the customer's automated contact method is text, not email"),
    ],
)
def test_a_customer_without_a_valid_address_is_skipped(world: World, customer: dict[str, Any], reason: str):
    world.save_company()
    world.activate("confirmation")
    world.add_work_order(start=RUN_DATE, status="en_route", customer=customer)

    assert world.worker.handle(status_email("confirmation")) == Handled(Outcome.SKIPPED, reason)
    assert world.ledger.items == {} and world.server.accepted == []


def test_why_not_send_is_none_when_the_message_may_go_and_uses_the_parents_contact():
    active = default_automation("confirmation").model_copy(update={"active": True})
    child = stored_work_order("WO-9b", RUN_DATE, parent_id="WO-9", customer={"contact_method": "none"})
    parent = stored_work_order("WO-9", RUN_DATE)
    message = status_email("confirmation", "WO-9b")

    assert why_not_send(active, message, child, parent) is None
    assert why_not_send(active, message, child, None) == (
        "the customer's automated contact method is none, not email"
    )
    due = stored_work_order("WO-1", TOMORROW)
    active_reminder = default_automation("reminder").model_copy(update={"active": True})
    assert why_not_send(active_reminder, reminder(), due, None) is None
    assert why_not_send(default_automation("reminder"), reminder(), due, None) == "automation inactive"


def test_handled_reads_as_its_outcome_and_detail():
    assert str(Handled(Outcome.SENT)) == "sent"
    assert str(Handled(Outcome.SKIPPED, "already sent")) == "skipped: already sent"


# --- the claim: never twice --------------------------------------------------------------------------


def test_a_message_claimed_elsewhere_is_not_sent(ready: World):
    assert ready.ledger.claim(reminder().ledger_key)  # another worker holds it (or died after sending)

    assert ready.worker.handle(reminder()) == Handled(Outcome.SKIPPED, "already sent")
    assert ready.server.accepted == [] and ready.entries() == []
    assert ready.ledger.state(reminder().ledger_key) == "sending"


def test_a_redelivered_confirmation_is_sent_once(world: World):
    world.save_company()
    world.activate("confirmation")
    world.add_work_order(start=RUN_DATE, status="en_route")

    first = world.worker.handle(status_email("confirmation"))
    second = world.worker.handle(status_email("confirmation"), receive_count=2)

    assert (first, second) == (Handled(Outcome.SENT), Handled(Outcome.SKIPPED, "already sent"))
    assert len(world.server.accepted) == 1 and len(world.entries()) == 1


def test_a_redelivered_reminder_is_sent_once(ready: World):
    first = ready.worker.handle(reminder())
    second = ready.worker.handle(reminder(), receive_count=2)

    # The work order now says confirmation_sent; were it not saved (a crash), the ledger would stop it.
    assert (first, second) == (Handled(Outcome.SENT), Handled(Outcome.SKIPPED, "no longer due a reminder"))
    assert len(ready.server.accepted) == 1 and len(ready.entries()) == 1


# --- sent --------------------------------------------------------------------------------------------


def test_a_sent_reminder_is_marked_in_the_ledger_the_work_order_and_the_sent_log(ready: World):
    handled = ready.worker.handle(reminder())

    assert handled == Handled(Outcome.SENT)
    [sent] = ready.server.to(CUSTOMER)
    assert sent.message["Subject"] == "Reminder: your appointment on Tuesday, November 24, 2026"
    assert sent.message["Auto-Submitted"] == "auto-generated"
    assert ready.server.connections[0].password == PASSWORD  # signed in with the saved password
    assert ready.ledger.state(reminder().ledger_key) == "sent"
    work_order = ready.work_orders.get(TENANT, "WO-1")
    assert work_order is not None and work_order.confirmation_status == "confirmation_sent"
    [entry] = ready.entries()
    assert (entry.kind, entry.status, entry.automation, entry.work_order_id, entry.profile) == (
        "automation",
        "sent",
        "reminder",
        "WO-1",
        "company",
    )
    assert entry.to == [CUSTOMER] and entry.from_ == ACCOUNT and entry.bcc == []
    assert entry.message_id == sent.message["Message-ID"] and entry.error is None
    assert entry.subject == sent.message["Subject"]


def test_the_company_bcc_is_in_the_envelope_and_the_sent_log_only(world: World):
    world.save_company(bcc="archive@acme.example")
    world.activate("reminder")
    world.add_work_order()

    assert world.worker.handle(reminder()) == Handled(Outcome.SENT)

    [sent] = world.server.accepted
    assert sent.recipients == (CUSTOMER, "archive@acme.example") and "Bcc" not in sent.message
    assert world.entries()[0].bcc == ["archive@acme.example"]


def test_a_sent_confirmation_carries_the_technicians_photo_and_leaves_the_confirmation_status(world: World):
    world.save_company()
    world.activate("confirmation")
    world.attachments.put_object(TENANT, PHOTO_UPLOAD, "luis.jpg", PHOTO, "image/jpeg")
    technician = {"name": "Luis Ortega", "photo_upload_id": PHOTO_UPLOAD}
    world.add_work_order(start=RUN_DATE, status="en_route", technician=technician)

    assert world.worker.handle(status_email("confirmation")) == Handled(Outcome.SENT)

    [sent] = world.server.to(CUSTOMER)
    assert sent.message["Subject"] == "Luis is on the way"
    image = next(p for p in sent.message.walk() if p.get_content_maintype() == "image")
    assert image["Content-ID"] == f"<{PHOTO_CID}>" and image.get_content() == PHOTO
    work_order = world.work_orders.get(TENANT, "WO-1")
    assert work_order is not None and work_order.confirmation_status == "none"
    assert world.ledger.state(status_email("confirmation").ledger_key) == "sent"


def test_one_connection_per_sender_for_the_batch_closed_with_the_worker(ready: World):
    ready.add_work_order("WO-2")

    assert ready.worker.handle(reminder("WO-1")) == Handled(Outcome.SENT)
    assert ready.worker.handle(reminder("WO-2")) == Handled(Outcome.SENT)
    ready.worker.close()

    [connection] = ready.server.connections
    assert len(connection.outbox) == 2 and connection.closed


def test_a_sent_log_write_failure_does_not_undo_the_send(ready: World, caplog: pytest.LogCaptureFixture):
    ready.sent_log.fail("put")

    assert ready.worker.handle(reminder()) == Handled(Outcome.SENT)

    assert len(ready.server.accepted) == 1 and ready.ledger.state(reminder().ledger_key) == "sent"
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == ["sent log write failed"]


# --- failures after the claim ------------------------------------------------------------------------


@pytest.mark.parametrize("receive_count", range(1, MAX_RECEIVES))
def test_a_transient_failure_releases_the_claim_and_asks_for_a_retry(
    ready: World, caplog: pytest.LogCaptureFixture, receive_count: int
):
    ready.server.fail_next(failure("throttled", transient=True, smtp_code=451))

    with pytest.raises(RetryLater, match="throttled"):
        ready.worker.handle(reminder(), receive_count=receive_count)

    assert ready.ledger.state(reminder().ledger_key) is None
    assert ready.server.accepted == [] and ready.entries() == []
    [retried] = [r for r in caplog.records if r.getMessage() == "automated email will be retried"]
    assert (retried.category, retried.work_order_id) == ("throttled", "WO-1")  # type: ignore[attr-defined]

    assert ready.worker.handle(reminder(), receive_count=receive_count + 1) == Handled(Outcome.SENT)
    assert len(ready.server.to(CUSTOMER)) == 1


def test_a_lost_connection_is_dropped_and_the_next_message_opens_a_new_one(ready: World):
    ready.add_work_order("WO-2")
    ready.server.fail_next(failure("connection_lost", transient=True))

    with pytest.raises(RetryLater):
        ready.worker.handle(reminder("WO-1"))
    assert ready.worker.handle(reminder("WO-2")) == Handled(Outcome.SENT)

    first, second = ready.server.connections
    assert first.closed and first.outbox == [] and len(second.outbox) == 1


def test_a_transient_failure_on_the_last_receive_is_failed_and_the_company_is_told(ready: World):
    ready.server.fail_next(failure("throttled", transient=True, smtp_code=451))

    handled = ready.worker.handle(reminder(), receive_count=MAX_RECEIVES)

    assert handled == Handled(Outcome.FAILED, "throttled")
    assert ready.ledger.state(reminder().ledger_key) == "failed"
    [entry] = ready.entries()
    assert entry.status == "failed" and entry.to == [CUSTOMER] and entry.work_order_id == "WO-1"
    assert entry.error is not None and entry.error["category"] == "throttled"
    assert ready.server.to(CUSTOMER) == []
    [notice] = ready.server.to(OWNER)
    assert notice.message["Subject"] == "Not sent: reminder email for work order WO-1"
    assert "WO-1" in text_of(notice) and "How to fix it" in text_of(notice)


def test_a_permanent_failure_is_failed_at_once_and_the_company_is_told(ready: World):
    ready.server.fail_next(failure("recipient_rejected", transient=False, stage="envelope", smtp_code=550))

    assert ready.worker.handle(reminder()) == Handled(Outcome.FAILED, "recipient_rejected")

    assert ready.ledger.state(reminder().ledger_key) == "failed"
    assert [e.status for e in ready.entries()] == ["failed"]
    [notice] = ready.server.accepted
    assert notice.recipients == (OWNER,) and "recipient rejected" in text_of(notice)
    assert ready.worker.handle(reminder(), receive_count=2) == Handled(Outcome.SKIPPED, "already sent")


def test_no_company_settings_is_not_configured(world: World):
    world.activate("reminder")
    world.add_work_order()

    assert world.worker.handle(reminder()) == Handled(Outcome.FAILED, "not_configured")

    assert world.ledger.state(reminder().ledger_key) == "failed"
    [entry] = world.entries()
    assert entry.error is not None and entry.error["stage"] == "connect"
    assert "/settings/company" in entry.error["hint"]
    assert world.server.connections == []  # and nobody to tell


def test_a_deleted_password_is_password_missing_and_no_connection_is_opened(
    ready: World, caplog: pytest.LogCaptureFixture
):
    ready.secrets.delete(ready.secret_name)

    assert ready.worker.handle(reminder()) == Handled(Outcome.FAILED, "password_missing")

    assert ready.ledger.state(reminder().ledger_key) == "failed"
    [entry] = ready.entries()
    assert entry.error is not None and entry.error["stage"] == "auth"
    assert "Save the settings again" in entry.error["hint"]
    assert ready.server.connections == []  # the notice needs the same password: not sent, and logged
    assert "failure notice not sent" in [r.getMessage() for r in caplog.records]


def _company_settings_read(tenant_id: str, sort_key: str) -> bool:
    return sort_key == "SETTINGS#company"


@pytest.mark.parametrize(
    ("part", "method", "when"),
    [
        pytest.param("store", "get", _company_settings_read, id="settings-table"),
        pytest.param("secrets", "get", None, id="secrets-manager"),
        pytest.param("attachments", "find", None, id="photo-bucket"),
    ],
)
def test_a_storage_outage_after_the_claim_gives_the_claim_back_and_raises(
    world: World, part: str, method: str, when: Any
):
    world.save_company()
    world.activate("confirmation")
    world.add_work_order(
        start=RUN_DATE, status="en_route", technician={"name": "Luis", "photo_upload_id": PHOTO_UPLOAD}
    )
    getattr(world, part).fail(method, when=when)
    message = status_email("confirmation")

    with pytest.raises(ServiceUnavailable):
        world.worker.handle(message)

    assert world.ledger.called("claim") == 1 and world.ledger.state(message.ledger_key) is None
    assert world.server.accepted == [] and world.entries() == []

    getattr(world, part).heal()
    fresh = OutboxWorker(world.worker.deps)  # the redelivery comes in another batch
    fresh.pool = MemoryPool(CONFIG, world.server)
    assert fresh.handle(message, receive_count=2) == Handled(Outcome.SENT)
    assert len(world.server.to(CUSTOMER)) == 1


def test_wording_that_cannot_be_filled_in_is_a_permanent_template_error(world: World):
    world.save_company()
    world.add_work_order()
    # Saved before the save-time check existed (that check refuses it now): straight into the table.
    world.store.put(
        TENANT,
        "AUTOMATION#reminder",
        {"active": True, "subject": "Visit", "body_html": "{{ 1 / 0 }}", "days_before": 1},
    )

    assert world.worker.handle(reminder()) == Handled(Outcome.FAILED, "template_error")

    assert world.ledger.state(reminder().ledger_key) == "failed"
    [entry] = world.entries()
    assert entry.error is not None and entry.error["stage"] == "render"
    assert "ZeroDivisionError" in entry.error["hint"] and "/automations/reminder" in entry.error["hint"]
    assert world.server.to(CUSTOMER) == [] and len(world.server.to(OWNER)) == 1


def test_wording_over_a_bound_with_this_work_orders_values_fails_once_for_good(world: World):
    # Saved: the sample number (WO-1001) gives no items. Work order 5000 would ask range() for 5,000.
    world.save_company()
    loop = "{% for i in range(work_order.number|int) %}<p>{{ customer.name }}</p>{% endfor %}"
    world.activate("reminder", body_html=loop)
    world.add_work_order("5000")
    message = reminder("5000")

    assert world.worker.handle(message) == Handled(Outcome.FAILED, "template_error")

    assert world.ledger.state(message.ledger_key) == "failed"
    [entry] = world.entries()
    assert entry.error is not None and entry.error["stage"] == "render" and entry.error["transient"] is False
    assert "TemplateLimitExceeded" in entry.error["hint"] and "/automations/reminder" in entry.error["hint"]
    assert world.server.to("5000@customer.example") == []
    [notice] = world.server.to(OWNER)
    assert "5000" in text_of(notice)
    assert world.worker.handle(message, receive_count=2) == Handled(Outcome.SKIPPED, "already sent")
    assert len(world.server.to(OWNER)) == 1 and len(world.entries()) == 1


# --- status changes and the reminder's mark, with other requests writing in between -------------------

ALREADY = EmailDecision(queued=False, reason="the work order was already en_route")
QUEUED = EmailDecision(queued=True, automation="confirmation")


class Interleaved(WorkOrderStore):
    """The work orders, where another request writes between this one's read and its write: each of
    `meanwhile` runs once, right after a read has returned (not during one that another runs)."""

    def __init__(self) -> None:
        super().__init__()
        self.meanwhile: list[Callable[[], object]] = []
        self._running = False

    def get(self, tenant_id: str, work_order_id: str) -> WorkOrder | None:
        read = super().get(tenant_id, work_order_id)
        if self.meanwhile and not self._running:
            self._running = True
            try:
                self.meanwhile.pop(0)()
            finally:
                self._running = False
        return read


@dataclass
class Taps:
    """Status changes of WO-1 (synced as scheduled: version 1), queueing into a fake outbox."""

    changes: StatusChanges
    work_orders: Interleaved
    outbox: OutboxQueue

    def tap(self, status: str = "en_route") -> StatusChangeResult:
        return self.changes.change(ADMIN, "WO-1", StatusChange.model_validate({"status": status}))

    def stored(self) -> WorkOrder:
        work_order = self.work_orders.get(TENANT, "WO-1")
        assert work_order is not None
        return work_order

    def occurrences(self) -> list[str]:
        return [m.occurrence for m in self.outbox.messages(OutboxMessage)]


def interleaved(world: World) -> Interleaved:
    store = Interleaved()
    world.work_orders = world.worker.deps.work_orders = store  # type: ignore[assignment]
    return store


@pytest.fixture
def taps(world: World) -> Taps:
    world.save_company()
    world.activate("confirmation")
    store = interleaved(world)
    world.add_work_order(start=RUN_DATE)
    outbox = OutboxQueue()
    return Taps(StatusChanges(world.worker.deps.automations, store, outbox), store, outbox)  # type: ignore[arg-type]


def test_the_loser_of_two_taps_at_once_answers_from_the_winners_write_and_queues_nothing(taps: Taps):
    winner: list[StatusChangeResult] = []
    taps.work_orders.meanwhile.append(lambda: winner.append(taps.tap()))  # after the loser's read

    loser = taps.tap()

    assert winner[0].email == QUEUED and winner[0].work_order.version == 2
    assert loser.email == ALREADY and loser.work_order.version == 2 and loser.work_order.status == "en_route"
    assert taps.occurrences() == ["status:en_route:v2"]
    assert taps.stored().version == 2


def test_a_loser_that_finds_another_status_writes_once_more_and_queues_that_transition(taps: Taps):
    taps.work_orders.meanwhile.append(lambda: taps.tap("in_progress"))  # v2, after the loser's read

    result = taps.tap()

    assert result.email == QUEUED and result.work_order.version == 3
    assert taps.occurrences() == ["status:en_route:v3"]
    assert taps.stored().status == "en_route"


def test_a_request_that_loses_both_writes_is_told_to_try_again_and_queues_nothing(taps: Taps):
    taps.work_orders.meanwhile += [lambda: taps.tap("in_progress"), lambda: taps.tap("completed")]

    with pytest.raises(ServiceUnavailable, match="try again"):
        taps.tap()

    assert taps.occurrences() == [] and taps.stored().status == "completed"


def test_the_same_status_again_writes_and_queues_nothing(taps: Taps):
    first, again = taps.tap(), taps.tap()

    assert (first.email, again.email) == (QUEUED, ALREADY)
    assert taps.stored().version == 2 and taps.occurrences() == ["status:en_route:v2"]


def test_a_work_order_stored_before_versions_is_version_0_and_its_change_writes_1(taps: Taps):
    del taps.work_orders.items[(TENANT, "WO-1")]["version"]

    assert taps.stored().version == 0
    assert taps.tap().email == QUEUED
    assert taps.occurrences() == ["status:en_route:v1"] and taps.stored().version == 1


def test_a_queue_failure_puts_the_previous_status_back_and_the_retry_queues_a_new_transition(taps: Taps):
    taps.outbox.fail("send")

    with pytest.raises(ServiceUnavailable):
        taps.tap()

    assert (taps.stored().status, taps.stored().version) == ("scheduled", 3)  # en route, then back
    taps.outbox.heal()
    assert taps.tap().email == QUEUED and taps.occurrences() == ["status:en_route:v4"]


def test_a_queue_failure_leaves_a_write_made_meanwhile_alone(taps: Taps):
    def synced_meanwhile(*_: object) -> bool:  # the business application's PUT, then SQS refuses
        taps.work_orders.put(TENANT, taps.stored().model_copy(update={"status": "in_progress"}))
        return True

    taps.outbox.fail("send", when=synced_meanwhile)

    with pytest.raises(ServiceUnavailable):
        taps.tap()

    assert (taps.stored().status, taps.stored().version) == ("in_progress", 3)


def test_a_reminder_sent_while_the_status_changed_marks_the_work_order_as_it_is_now(world: World):
    world.save_company()
    world.activate("reminder")
    store = interleaved(world)
    world.add_work_order()
    changes = StatusChanges(world.worker.deps.automations, store, OutboxQueue())  # type: ignore[arg-type]
    store.meanwhile.append(lambda: changes.change(ADMIN, "WO-1", StatusChange(status="en_route")))

    assert world.worker.handle(reminder()) == Handled(Outcome.SENT)  # it had read WO-1 as scheduled

    work_order = store.get(TENANT, "WO-1")
    assert work_order is not None
    assert (work_order.status, work_order.confirmation_status, work_order.version) == (
        "en_route",
        "confirmation_sent",
        3,
    )


# --- a batch at once ----------------------------------------------------------------------------------


def batch_of(world: World, count: int, **changes: Any) -> list[tuple[OutboxMessage, int]]:
    """`count` reminders due tomorrow, WO-1 onwards, as one SQS batch (first receive each)."""
    for n in range(1, count + 1):
        world.add_work_order(f"WO-{n}", **changes)
    return [(reminder(f"WO-{n}"), 1) for n in range(1, count + 1)]


def outcomes(settled: list[Settled]) -> list[str]:
    return [str(s.handled) + (" (again)" if s.retry else "") for s in settled]


def fresh_worker(world: World, **options: Any) -> OutboxWorker:
    """The worker of another invocation (the redelivery comes in another batch), on the same server."""
    worker = OutboxWorker(world.worker.deps, **options)
    worker.pool = MemoryPool(CONFIG, world.server)
    return worker


def test_a_batch_is_read_claimed_written_and_marked_in_one_call_each(ready: World):
    batch = batch_of(ready, 5)

    settled = ready.worker.handle_batch(batch)

    assert outcomes(settled) == ["sent"] * 5
    assert len(ready.server.accepted) == 5 and len(ready.server.connections) == 1
    assert [ready.work_orders.called(m) for m in ("get_many", "get", "put_if_versions")] == [1, 5, 1]
    assert (ready.ledger.called("claim_many"), ready.ledger.called("claim")) == (1, 0)
    assert ready.ledger.called("finish_many") == 5  # one call, recorded once per item
    assert len(ready.entries()) == 5
    assert {ready.ledger.state(m.ledger_key) for m, _ in batch} == {"sent"}
    assert {
        w.confirmation_status for w in map(lambda m: ready.work_orders.get(TENANT, m[0].work_order_id), batch)
    } == {"confirmation_sent"}


def test_in_a_batch_the_claimed_elsewhere_the_duplicates_and_the_not_due_are_skipped(ready: World):
    batch = batch_of(ready, 4)
    ready.add_work_order("WO-9", status="cancelled")
    ready.ledger.claim(reminder("WO-2").ledger_key)  # another worker holds it

    settled = ready.worker.handle_batch([*batch, (reminder("WO-1"), 1), (reminder("WO-9"), 1)])

    assert outcomes(settled) == [
        "sent",
        "skipped: already sent",
        "sent",
        "sent",
        "skipped: already sent",
        "skipped: no longer due a reminder",
    ]
    assert sorted(r for m in ready.server.accepted for r in m.recipients) == [
        "wo-1@customer.example",
        "wo-3@customer.example",
        "wo-4@customer.example",
    ]
    assert ready.ledger.state(reminder("WO-2").ledger_key) == "sending"


def test_a_transient_failure_in_a_batch_comes_back_alone(ready: World):
    batch = batch_of(ready, 3)
    ready.server.fail_next(failure("throttled", transient=True, smtp_code=451))

    settled = ready.worker.handle_batch(batch)

    assert outcomes(settled) == ["deferred: throttled (again)", "sent", "sent"]
    assert isinstance(settled[0].retry, RetryLater)
    assert ready.ledger.state(reminder("WO-1").ledger_key) is None  # given back for the redelivery
    assert fresh_worker(ready).handle_batch(batch[:1])[0].handled == Handled(Outcome.SENT)
    assert len(ready.server.to(CUSTOMER)) == 1


def test_a_claim_outage_leaves_the_whole_batch_for_redelivery_with_nothing_claimed(ready: World):
    batch = batch_of(ready, 3)
    ready.ledger.fail("claim_many")

    settled = ready.worker.handle_batch(batch)

    assert [type(s.retry) for s in settled] == [ServiceUnavailable] * 3
    assert ready.ledger.items == {} and ready.server.accepted == [] and ready.entries() == []


def test_no_send_is_started_without_the_time_for_one(ready: World, caplog: pytest.LogCaptureFixture):
    batch = batch_of(ready, 3)
    left = iter([60_000, 60_000, 60_000, 1_000])  # the pool's deadline, two sends, then too little
    worker = fresh_worker(ready, remaining_ms=lambda: next(left, 1_000))

    settled = worker.handle_batch(batch)

    assert outcomes(settled) == ["sent", "sent", "deferred: too little time left in this invocation (again)"]
    assert isinstance(settled[2].retry, Deferred)
    assert ready.ledger.state(reminder("WO-3").ledger_key) is None and len(ready.server.accepted) == 2
    [stopped] = [r for r in caplog.records if r.getMessage().startswith("too little time left to send")]
    assert stopped.count == 1  # type: ignore[attr-defined]


def test_the_deadline_of_the_connections_ends_before_the_invocation(ready: World):
    worker = OutboxWorker(ready.worker.deps, remaining_ms=lambda: 40_000)

    assert worker.pool.deadline is not None
    assert 34 < worker.pool.deadline - time.monotonic() <= 40 - WRITE_RESERVE_SECONDS
    assert send_reserve_seconds(CONFIG) == CONFIG.smtp_timeout_seconds + WRITE_RESERVE_SECONDS


class OneAtATime(OutboxWorker):
    """A budget that admits the first message of each tenant's batch; the rest in 30 s."""

    def _admit(self, tenant_id, profile, messages):  # type: ignore[no-untyped-def]
        return messages[:1], 30


def test_messages_the_budget_does_not_admit_wait_on_the_queue_and_their_records_are_done(ready: World):
    batch = batch_of(ready, 3)
    queue = OutboxQueue()
    worker = OneAtATime(replace(ready.worker.deps, outbox=queue))  # type: ignore[arg-type]
    worker.pool = MemoryPool(CONFIG, ready.server)

    settled = worker.handle_batch(batch)

    assert outcomes(settled) == ["sent"] + ["deferred: over the sending budget: again in 32 s"] * 2
    assert [s.retry for s in settled] == [None, None, None]  # done with: the receive count is kept
    assert [ready.ledger.state(m.ledger_key) for m, _ in batch] == ["sent", None, None]  # claims given back
    copies = queue.messages(OutboxMessage)
    assert [c.ledger_key for c in copies] == [m.ledger_key for m, _ in batch[1:]]
    assert [c.deferrals for c in copies] == [1, 1] and queue.delays == [32, 32]  # the window turns, +2 s
    assert sum(len(c.outbox) for c in ready.server.connections) == 1


def test_a_deferred_copy_the_queue_refuses_brings_its_record_back(ready: World):
    batch = batch_of(ready, 2)
    queue = OutboxQueue()
    queue.fail("send")
    worker = OneAtATime(replace(ready.worker.deps, outbox=queue))  # type: ignore[arg-type]
    worker.pool = MemoryPool(CONFIG, ready.server)

    settled = worker.handle_batch(batch)

    assert outcomes(settled)[0] == "sent" and isinstance(settled[1].retry, Deferred)
    assert ready.ledger.state(batch[1][0].ledger_key) is None  # free for the redelivery


def test_a_reminder_marked_meanwhile_in_a_batch_keeps_the_newer_work_order(world: World):
    world.save_company()
    world.activate("reminder")
    store = interleaved(world)
    batch = batch_of(world, 2)
    changes = StatusChanges(world.worker.deps.automations, store, OutboxQueue())  # type: ignore[arg-type]
    store.meanwhile.append(lambda: changes.change(ADMIN, "WO-1", StatusChange(status="en_route")))

    assert outcomes(world.worker.handle_batch(batch)) == ["sent", "sent"]  # WO-1 was read as scheduled

    one, two = store.get(TENANT, "WO-1"), store.get(TENANT, "WO-2")
    assert one is not None and two is not None
    assert (one.status, one.confirmation_status, one.version) == ("en_route", "confirmation_sent", 3)
    assert (two.status, two.confirmation_status, two.version) == ("scheduled", "confirmation_sent", 2)


# --- the sent log after a send ----------------------------------------------------------------------------


def with_outbox(world: World) -> OutboxQueue:
    queue = OutboxQueue()
    world.worker.deps.outbox = queue  # type: ignore[assignment]
    return queue


def test_a_sent_log_entry_the_table_refuses_waits_on_the_queue_and_is_written_from_there(ready: World):
    queue = with_outbox(ready)
    ready.sent_log.fail("put")

    assert ready.worker.handle(reminder()) == Handled(Outcome.SENT)  # the record is done

    assert ready.entries() == [] and ready.ledger.state(reminder().ledger_key) == "sent"
    [body] = queue.bodies
    waiting = parse_queued(body)
    assert isinstance(waiting, SentLogMessage) and waiting.entry.status == "sent"
    ready.sent_log.heal()
    settled = fresh_worker(ready).handle_records([(body, 1), (body, 2)])  # and once more
    assert [s.handled.outcome for s in settled] == [Outcome.LOGGED, Outcome.LOGGED]
    [entry] = ready.entries()
    assert entry.id == waiting.entry.id and entry.message_id == ready.server.accepted[0].message["Message-ID"]
    assert len(ready.server.accepted) == 1


def test_an_entry_refused_by_the_table_and_the_queue_rides_in_the_ledger_and_its_redelivery_writes_it(
    ready: World,
):
    queue = with_outbox(ready)
    ready.sent_log.fail("put")
    queue.fail("send")

    with pytest.raises(RetryLater, match="sent log"):
        ready.worker.handle(reminder())

    assert len(ready.server.accepted) == 1 and ready.entries() == []
    assert ready.ledger.items[reminder().ledger_key]["unlogged"]["status"] == "sent"
    work_order = ready.work_orders.get(TENANT, "WO-1")
    assert work_order is not None and work_order.confirmation_status == "none"  # still due: see below
    ready.sent_log.heal()
    queue.heal()
    assert fresh_worker(ready).handle(reminder(), 2) == Handled(Outcome.SKIPPED, "already sent")
    assert len(ready.server.accepted) == 1  # the redelivery sent nothing
    [entry] = ready.entries()
    assert entry.status == "sent" and "unlogged" not in ready.ledger.items[reminder().ledger_key]
    work_order = ready.work_orders.get(TENANT, "WO-1")
    assert work_order is not None and work_order.confirmation_status == "confirmation_sent"


def test_a_queued_entry_that_cannot_be_written_comes_back(ready: World):
    body = SentLogMessage(
        tenant_id=TENANT,
        entry=SentLogEntry.attempt(
            kind="automation", delivery=None, failure=None, from_=ACCOUNT, to=[CUSTOMER], subject="s"
        ),
    ).model_dump_json()
    ready.sent_log.fail("put_many")

    [settled] = ready.worker.handle_records([(body, 1)])

    assert isinstance(settled.retry, RetryLater) and ready.entries() == []


def test_a_redelivered_reminder_whose_mark_was_lost_is_marked_and_not_sent(ready: World):
    ready.work_orders.fail("put")

    with pytest.raises(ServiceUnavailable):
        ready.worker.handle(reminder())  # sent and recorded; the mark failed: the record comes back

    ready.work_orders.heal()
    assert fresh_worker(ready).handle(reminder(), 2) == Handled(Outcome.SKIPPED, "already sent")
    work_order = ready.work_orders.get(TENANT, "WO-1")
    assert work_order is not None and work_order.confirmation_status == "confirmation_sent"
    assert len(ready.server.accepted) == 1 and len(ready.entries()) == 1


# --- what the queue holds ---------------------------------------------------------------------------------


def test_a_message_queued_before_kinds_existed_is_an_automated_email():
    legacy = '{"tenant_id":"acme","automation":"reminder","work_order_id":"WO-1","occurrence":"2026-11-24"}'

    message = parse_queued(legacy)

    assert isinstance(message, OutboxMessage) and message.kind == "automation" and message.deferrals == 0
    assert parse_queued(message.model_dump_json()) == message


def test_a_body_that_is_no_message_comes_back_and_the_rest_of_the_batch_goes_on(ready: World):
    settled = ready.worker.handle_records([('{"kind": "postcard"}', 1), (reminder().model_dump_json(), 1)])

    assert settled[0].message is None and isinstance(settled[0].retry, ValidationError)
    assert settled[1].handled == Handled(Outcome.SENT)


def test_a_redelivery_that_cannot_write_the_kept_entry_either_leaves_the_reminder_due_for_the_next(
    ready: World,
):
    queue = with_outbox(ready)
    ready.sent_log.fail("put")
    queue.fail("send")
    with pytest.raises(RetryLater):
        ready.worker.handle(reminder())

    with pytest.raises(RetryLater, match="sent log"):  # the sent log still refuses
        fresh_worker(ready).handle(reminder(), 2)

    work_order = ready.work_orders.get(TENANT, "WO-1")
    assert work_order is not None and work_order.confirmation_status == "none"
    ready.sent_log.heal()
    assert fresh_worker(ready).handle(reminder(), 3) == Handled(Outcome.SKIPPED, "already sent")
    assert [e.status for e in ready.entries()] == ["sent"] and len(ready.server.accepted) == 1
    work_order = ready.work_orders.get(TENANT, "WO-1")
    assert work_order is not None and work_order.confirmation_status == "confirmation_sent"
