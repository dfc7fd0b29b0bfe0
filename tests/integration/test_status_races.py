"""Status changes that race: taps at the same moment from separate containers, and repeated transitions.

Every test here runs on one moto server on 127.0.0.1 (tests.support.concurrency), so that separate
processes, each loading the work-orders function as Lambda does, share the same tables and queue.
The outbox is then drained through the email worker into a real SMTP server that keeps every message.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import pytest

from local.events import FakeContext
from local.template import Template
from mailer.dal import clients as aws_clients
from tests.support.concurrency import Request, SharedMoto, call_together, shared_moto
from tests.support.factories import RUN_DATE, company_settings, work_order
from tests.support.steps import activate, sync

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "office@acme.example"
CONTAINERS = 5
ALREADY = "the work order was already en_route"


@pytest.fixture
def moto(template: Template, monkeypatch: pytest.MonkeyPatch) -> Iterator[SharedMoto]:
    with shared_moto(template) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        monkeypatch.setenv("no_proxy", "127.0.0.1")
        aws_clients.reset()
        yield server
        aws_clients.reset()


@pytest.fixture
def aws(moto: SharedMoto):
    """This module's AWS: the shared moto server, not moto's in-process mock (the `api` and `outbox`
    fixtures take it from here)."""
    return moto.session


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


@pytest.fixture
def company(api, trust_local_ca, mail_server):
    assert (
        api.call("PUT", "/settings/company", company_settings(ACCOUNT, PASSWORD, port=mail_server.port))[0]
        == 200
    )
    activate(api, "confirmation")


def en_route(work_order_id: str) -> Request:
    return Request("POST", f"/work-orders/{work_order_id}/status", {"status": "en_route"})


def recipients(server) -> list[str]:
    return sorted(address for m in server.messages for address in m.rcpt_tos)


def test_taps_at_the_same_moment_in_separate_containers_send_one_confirmation(
    api, company, outbox, mail_server
):
    orders = ["WO-1", "WO-2", "WO-3"]
    for number in orders:
        sync(api, number, work_order(number, RUN_DATE))

    rounds = call_together(
        CONTAINERS,
        [en_route(number) for number in orders],
        dict(os.environ),
        warm_up=Request("GET", f"/work-orders/{orders[0]}"),
    )
    assert outbox.drain() == []

    assert recipients(mail_server) == [f"{n.lower()}@customer.example" for n in orders]
    for number, answers in zip(orders, rounds, strict=True):
        assert [a.status for a in answers] == [200] * CONTAINERS, answers
        emails = [a.body["email"] for a in answers]
        assert sum(e["queued"] for e in emails) == 1, (number, emails)
        assert sorted(e["reason"] or "" for e in emails) == [""] + [ALREADY] * (CONTAINERS - 1)
        assert {a.body["work_order"]["version"] for a in answers} == {2}  # synced: 1, en route: 2
    assert api.call("GET", "/work-orders/WO-1")[1]["version"] == 2


def test_each_transition_mails_once_however_often_its_message_comes(api, company, outbox, mail_server):
    sync(api, "WO-1", work_order("WO-1", RUN_DATE))

    for status in ("en_route", "in_progress", "en_route"):
        assert api.call("POST", "/work-orders/WO-1/status", {"status": status})[0] == 200
    messages = outbox.receive()

    assert [json.loads(m["Body"])["occurrence"] for m in messages] == [
        "status:en_route:v2",
        "status:en_route:v4",
    ]
    assert outbox.invoke(messages) == []
    assert len(mail_server.messages) == 2  # two transitions to en route, two confirmations

    first = messages[0]
    again = outbox.worker.lambda_handler(outbox.event([first]), FakeContext())  # SQS delivers it again
    outbox.sqs.send_message(QueueUrl=outbox.url, MessageBody=first["Body"])  # or it is queued again
    assert again["batchItemFailures"] == [] and outbox.drain() == []
    assert len(mail_server.messages) == 2


def test_five_reminder_runs_at_the_same_moment_send_each_reminder_once(api, company, outbox, mail_server):
    activate(api, "reminder")
    orders = [f"WO-{n}" for n in range(1, 8)]
    tomorrow = RUN_DATE.fromordinal(RUN_DATE.toordinal() + 1)
    for number in orders:
        sync(api, number, work_order(number, tomorrow))

    [answers] = call_together(
        CONTAINERS,
        [Request("POST", "/automations/reminder/run", {"date": RUN_DATE.isoformat()})],
        dict(os.environ),
        warm_up=Request("GET", "/automations/reminder"),
    )
    assert [a.status for a in answers] == [200] * CONTAINERS, answers
    assert sum(a.body["queued"] for a in answers) >= len(orders)  # runs that overlap queue the same ones

    assert outbox.drain() == []
    assert recipients(mail_server) == sorted(f"{n.lower()}@customer.example" for n in orders)  # once each
    again = api.call("POST", "/automations/reminder/run", {"date": RUN_DATE.isoformat()})
    assert again[1]["queued"] == 0
