"""The batched outbox worker when AWS or the mail server fails in the middle of a batch.

AWS errors are injected with their real codes below every store (tests.support.faults); the mail
server is a real one on loopback, or a slow relay in front of it. Each case checks what the
customer gets (exactly one mail, or none yet) and what support sees in the sent log (GET /emails).
"""

from __future__ import annotations

import os
import selectors
import socket
import time
from collections import Counter
from typing import Any

import pytest

from local.events import FakeContext
from mailer.dal.ledger_table import LedgerStore
from tests.support.factories import TOMORROW, company_settings, work_order
from tests.support.faults import AwsFaults
from tests.support.processes import SlowContext
from tests.support.steps import activate, run_reminders, save_settings, sync

ACCOUNT = "office@acme.example"
PASSWORD = "Batch-Fault-Pa55word"
TENANT = "demo"


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


def queue_reminders(api, port: int, count: int) -> list[str]:
    save_settings(api, company_settings(ACCOUNT, PASSWORD, port=port))
    activate(api, "reminder")
    for n in range(count):
        sync(api, f"WO-{n}", work_order(f"WO-{n}", TOMORROW))
    assert run_reminders(api) == count
    return [f"wo-{n}@customer.example" for n in range(count)]


def delivered(server) -> Counter[str]:
    return Counter(address for m in server.messages for address in m.rcpt_tos)


def ledger_state(work_order_id: str) -> str | None:
    key = (TENANT, "reminder", work_order_id, TOMORROW.isoformat())
    return LedgerStore(os.environ["LEDGER_TABLE"]).state(key)


def sent_log(api) -> list[dict[str, Any]]:
    status, page, _ = api.call("GET", "/emails")
    assert status == 200, page
    return page["items"]


def writes_to(table_variable: str):
    """Matches a BatchWriteItem with items for the table the function knows by that variable."""

    def matches(service: str, operation: str, params: dict[str, Any]) -> bool:
        return os.environ[table_variable] in (params.get("RequestItems") or {})

    return matches


# --- the claim ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "TransactionCanceledException", "TransactionInProgressException"]
)
def test_a_throttled_claim_transaction_leaves_the_batch_for_redelivery_which_sends_each_once(
    api, trust_local_ca, outbox, mail_server, aws_faults: AwsFaults, code
):
    customers = queue_reminders(api, mail_server.port, 3)
    batch = outbox.receive()
    aws_faults.fail("dynamodb", code, operations=("TransactWriteItems",))

    failed = outbox.invoke(batch)

    assert aws_faults.failed, "the claim transaction was never made"
    assert sorted(failed) == sorted(m["MessageId"] for m in batch), "every record comes back"
    assert mail_server.messages == [] and sent_log(api) == []
    assert [ledger_state(f"WO-{n}") for n in range(3)] == [None] * 3, "nothing claimed"

    aws_faults.clear()
    assert outbox.drain() == []
    assert outbox.drain() == []
    assert delivered(mail_server) == Counter(customers)
    assert sorted(e["to"][0] for e in sent_log(api)) == sorted(customers)


# --- the sent log after the send ---------------------------------------------------------------------


def test_a_sent_log_write_that_fails_after_the_send_is_written_from_the_queue(
    api, trust_local_ca, outbox, mail_server, aws_faults: AwsFaults
):
    [customer] = queue_reminders(api, mail_server.port, 1)
    aws_faults.fail(
        "dynamodb",
        "ProvisionedThroughputExceededException",
        operations=("BatchWriteItem",),
        when=writes_to("SENT_LOG_TABLE"),
    )

    assert outbox.drain() == [], "the mail went out: the record is done"

    assert delivered(mail_server) == Counter([customer]) and sent_log(api) == []
    assert ledger_state("WO-0") == "sent"
    aws_faults.clear()
    assert outbox.drain() == []  # the queued entry
    [entry] = sent_log(api)
    assert entry["status"] == "sent" and entry["to"] == [customer] and entry["work_order_id"] == "WO-0"
    assert entry["message_id"] == mail_server.messages[0].parsed()["Message-ID"]
    assert outbox.drain() == [] and delivered(mail_server) == Counter([customer])


def test_an_entry_neither_the_sent_log_nor_the_queue_takes_is_written_by_the_redelivery_which_sends_nothing(
    api, trust_local_ca, outbox, mail_server, aws_faults: AwsFaults
):
    [customer] = queue_reminders(api, mail_server.port, 1)
    aws_faults.fail(
        "dynamodb", "ThrottlingException", operations=("BatchWriteItem",), when=writes_to("SENT_LOG_TABLE")
    )
    aws_faults.fail("sqs", "AWS.SimpleQueueService.RequestThrottled", operations=("SendMessageBatch",))

    assert len(outbox.drain()) == 1, "the record comes back to write its entry"

    assert delivered(mail_server) == Counter([customer]) and sent_log(api) == []
    assert ledger_state("WO-0") == "sent"
    aws_faults.clear()
    assert outbox.drain() == []  # the redelivery: the claim is taken, its entry is written
    [entry] = sent_log(api)
    assert entry["status"] == "sent" and entry["to"] == [customer]
    assert api.call("GET", "/work-orders/WO-0")[1]["confirmation_status"] == "confirmation_sent"
    assert outbox.drain() == [] and delivered(mail_server) == Counter([customer])


# --- a slow server and the end of the invocation ------------------------------------------------------


def slow_relay(upstream_port: int, delay: float, slow: dict[str, bool]):
    """Relays to the real server, holding each of its answers `delay` seconds while `slow["on"]`:
    every step stays under the SMTP timeout, the whole conversation does not."""

    def script(conn: socket.socket) -> None:
        with socket.create_connection(("127.0.0.1", upstream_port), timeout=5) as upstream:
            peers = {conn: upstream, upstream: conn}
            with selectors.DefaultSelector() as selector:
                for sock in peers:
                    selector.register(sock, selectors.EVENT_READ)
                while True:
                    ready = selector.select(timeout=5)
                    if not ready:
                        return
                    for key, _ in ready:
                        source: socket.socket = key.fileobj  # type: ignore[assignment]
                        try:
                            data = source.recv(65536)
                        except OSError:
                            return
                        if not data:
                            return
                        if source is upstream and slow["on"]:
                            time.sleep(delay)
                        try:
                            peers[source].sendall(data)
                        except OSError:
                            return

    return script


def test_a_slow_server_cannot_keep_the_worker_past_its_invocation(
    api, trust_local_ca, outbox, mail_server, scripted_server, monkeypatch
):
    # Given a 1 s SMTP timeout and a server whose every answer takes 0.6 s (each step in time, the
    # whole conversation of a dozen answers not), and an invocation with 9 s left: enough to start a
    # send (1 s + 5 s), and the connection's deadline 4 s away (9 s less the 5 s for the writes)
    monkeypatch.setenv("SMTP_TIMEOUT_SECONDS", "1")
    outbox.worker.services.cache_clear()
    slow = {"on": True}
    front = scripted_server(slow_relay(mail_server.port, 0.6, slow))
    [customer] = queue_reminders(api, front.port, 1)
    batch = outbox.receive()

    started = time.monotonic()
    response = outbox.worker.lambda_handler(outbox.event(batch), SlowContext(remaining_ms=9_000))
    took = time.monotonic() - started

    assert took < 9, "the worker ran past the end of its invocation"
    assert took > 3, "cut by a step's own timeout, not by the connection's deadline"
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [batch[0]["MessageId"]]
    assert mail_server.messages == [] and ledger_state("WO-0") is None  # cut before the message
    outbox.sqs.change_message_visibility(
        QueueUrl=outbox.url, ReceiptHandle=batch[0]["ReceiptHandle"], VisibilityTimeout=0
    )

    slow["on"] = False
    assert outbox.invoke(outbox.receive()) == []
    assert delivered(mail_server) == Counter([customer])
    assert outbox.worker.lambda_handler(outbox.event(batch), FakeContext())["batchItemFailures"] == []
    assert delivered(mail_server) == Counter([customer])
