"""The outbox worker handling whole SQS batches, under moto with a real SMTP server on loopback.

The worker is driven as Lambda drives it (tests.support.outbox): records received from the queue,
handed to EmailWorkerFunction's handler as one SQS event, deleted unless reported in
batchItemFailures. What is checked is what a customer and a support person see: the mail that
arrived (how many, to whom), the sent log through the API, the ledger and the work orders.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pytest

from mailer.dal.ledger_table import LedgerStore
from tests.support.factories import OWNER, TOMORROW, company_settings, work_order
from tests.support.processes import SlowContext
from tests.support.smtp import ScriptedHandler
from tests.support.steps import activate, run_reminders, save_settings, sync

ACCOUNT = "office@acme.example"
PASSWORD = "Batch-Pa55word-Of-The-Company"
TENANT = "demo"  # the tenant of the API's default identity


@pytest.fixture
def handler() -> ScriptedHandler:
    return ScriptedHandler()


@pytest.fixture
def mail_server(smtp_server, handler):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=handler)


@pytest.fixture
def company(api, trust_local_ca, mail_server) -> None:
    save_settings(api, company_settings(ACCOUNT, PASSWORD, port=mail_server.port))


def due_reminders(api, count: int) -> list[str]:
    """`count` work orders due a reminder tomorrow, planned by the noon run; their customers' addresses."""
    activate(api, "reminder")
    for n in range(count):
        sync(api, f"WO-{n}", work_order(f"WO-{n}", TOMORROW))
    assert run_reminders(api) == count
    return [f"wo-{n}@customer.example" for n in range(count)]


def delivered(server) -> Counter[str]:
    return Counter(address for m in server.messages for address in m.rcpt_tos)


def ledger() -> LedgerStore:
    return LedgerStore(os.environ["LEDGER_TABLE"])


def reminder_key(work_order_id: str) -> tuple[str, str, str, str]:
    return TENANT, "reminder", work_order_id, TOMORROW.isoformat()


def sent_log(api, **query: str) -> list[dict[str, Any]]:
    status, page, _ = api.call("GET", "/emails", query=query)
    assert status == 200, page
    return page["items"]


def invoke_with(outbox, messages: list[dict[str, Any]], context: Any) -> list[str]:
    """As `outbox.invoke`, with the Lambda context given: the failed records made visible again, the
    others deleted; returns the ids reported as failed."""
    response = outbox.worker.lambda_handler(outbox.event(messages), context)
    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    for m in messages:
        if m["MessageId"] in failed:
            outbox.sqs.change_message_visibility(
                QueueUrl=outbox.url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0
            )
        else:
            outbox.sqs.delete_message(QueueUrl=outbox.url, ReceiptHandle=m["ReceiptHandle"])
    return failed


def test_a_batch_of_ten_with_two_already_claimed_sends_the_other_eight_once(
    api, company, outbox, mail_server
):
    # Given ten reminders in one SQS batch, two of which another attempt has claimed already
    customers = due_reminders(api, 10)
    assert ledger().claim(reminder_key("WO-3")) and ledger().claim(reminder_key("WO-7"))
    batch = outbox.receive()
    assert len(batch) == 10

    # When the worker handles the batch (and then whatever is left, twice)
    failed = outbox.invoke(batch)
    assert outbox.drain() == [] and outbox.drain() == []

    # Then the eight others got exactly one mail each, the two claimed ones none
    assert failed == []
    expected = [c for c in customers if c not in ("wo-3@customer.example", "wo-7@customer.example")]
    assert delivered(mail_server) == Counter(expected)
    assert len(mail_server.handler.peers) == 1  # one connection for the batch
    entries = sent_log(api)
    assert sorted(e["to"][0] for e in entries) == sorted(expected)
    assert {e["status"] for e in entries} == {"sent"}
    states = {n: ledger().state(reminder_key(f"WO-{n}")) for n in range(10)}
    assert states == {n: "sending" if n in (3, 7) else "sent" for n in range(10)}
    marked = {n: api.call("GET", f"/work-orders/WO-{n}")[1]["confirmation_status"] for n in range(10)}
    assert marked == {n: "none" if n in (3, 7) else "confirmation_sent" for n in range(10)}


def test_a_worker_with_too_little_time_left_sends_nothing_and_the_records_are_sent_once_later(
    api, company, outbox, mail_server, caplog
):
    customers = due_reminders(api, 3)
    batch = outbox.receive()

    # A context whose invocation ends in 10 s: less than one send's reserve (a 15 s SMTP timeout + 5 s)
    failed = invoke_with(outbox, batch, SlowContext(remaining_ms=10_000))

    assert sorted(failed) == sorted(m["MessageId"] for m in batch)
    assert mail_server.messages == [] and sent_log(api) == []
    assert [ledger().state(reminder_key(f"WO-{n}")) for n in range(3)] == [None] * 3  # given back
    assert any(r.getMessage().startswith("too little time left to send") for r in caplog.records)

    assert outbox.drain() == []  # the redelivery, with the time it needs
    assert outbox.drain() == []
    assert delivered(mail_server) == Counter(customers)


def emf_documents(text: str) -> list[dict[str, Any]]:
    documents = []
    for line in text.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            documents.append(document)
    return documents


def counts_by_automation(documents: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    """(metric, automation) -> value, from the EMF documents that carry the `automation` dimension."""
    found: dict[tuple[str, str], float] = {}
    for document in documents:
        [directive] = document["_aws"]["CloudWatchMetrics"]
        if not any("automation" in dimensions for dimensions in directive["Dimensions"]):
            continue
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            found[(metric["Name"], document["automation"])] = value[0] if isinstance(value, list) else value
    return found


def test_the_handler_counts_each_outcome_per_automation_in_its_metrics(
    api, company, outbox, mail_server, handler, capsys
):
    # Given a batch of four reminders (one refused by the server, one claimed elsewhere) and a
    # confirmation whose automation was switched off while it waited
    save_settings(api, company_settings(ACCOUNT, PASSWORD, port=mail_server.port, notify_email=OWNER))
    due_reminders(api, 4)
    activate(api, "confirmation")
    sync(api, "WO-9", work_order("WO-9", TOMORROW))
    assert api.call("POST", "/work-orders/WO-9/status", {"status": "en_route"})[1]["email"]["queued"]
    activate(api, "confirmation", active=False)
    handler.rcpt_reply = lambda address: (
        "550 5.1.1 No such user" if address == "wo-1@customer.example" else None
    )
    assert ledger().claim(reminder_key("WO-2"))
    capsys.readouterr()

    # When one invocation handles them
    assert outbox.drain() == []

    # Then its EMF output has one count per outcome and automation
    counts = counts_by_automation(emf_documents(capsys.readouterr().out))
    assert counts == {
        ("AutomatedEmailSent", "reminder"): 2,
        ("AutomatedEmailFailed", "reminder"): 1,
        ("AutomatedEmailSkipped", "reminder"): 1,
        ("AutomatedEmailSkipped", "confirmation"): 1,
    }


def test_records_left_for_lack_of_time_are_counted_as_deferred(api, company, outbox, capsys):
    due_reminders(api, 2)
    batch = outbox.receive()
    capsys.readouterr()

    assert len(invoke_with(outbox, batch, SlowContext(remaining_ms=5_000))) == 2

    counts = counts_by_automation(emf_documents(capsys.readouterr().out))
    assert counts == {("AutomatedEmailDeferred", "reminder"): 2}
