"""The sending budget on the local stack, as the banner's "Sending budgets" commands show it: 5 a
minute on the demo company, a burst of 8 reminders, 5 sent at once and 3 deferred to the next
minute, all 8 received once each; a test send meanwhile answers 429 with Retry-After."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest
import requests

from local import demo_data
from local.banner import banner
from local.stack import LocalStack
from tests.support.stack import banner_commands, running_stack
from tests.support.stack import run_curl as run

BURST_SECONDS = 90  # the minute the first five take, plus the deferred three's delay


@pytest.fixture(scope="module")
def lines() -> list[str]:
    return []


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, lines: list[str]) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("budget"), out=lines.append) as stack:
        yield stack


def budget_commands(stack: LocalStack) -> list[list[str]]:
    """The banner's curl commands of the budget section."""
    return banner_commands(banner(stack), "Sending budgets:")


def test_a_budget_of_five_a_minute_defers_a_burst_of_eight_and_all_arrive_once(
    stack: LocalStack, lines: list[str]
) -> None:
    assert stack.smtp is not None and stack.demo_today is not None
    limit, burst, usage, test_send = budget_commands(stack)[:4]
    burst_run = stack.demo_today + timedelta(days=demo_data.BURST_DAYS - 1)
    assert burst_run.isoformat() in burst[-1]
    while time.time() % 60 > 30:  # the five and the test send in one minute
        time.sleep(1)

    assert run(limit).status_code == 200
    queued = run(burst)
    refused: requests.Response | None = None  # the test send, once the five are sent
    assert queued.status_code == 200 and queued.json() == {"queued": len(demo_data.BURST)}

    burst_addresses = {f"burst{n}@demo.test" for n in range(1, 9)}
    deadline = time.monotonic() + BURST_SECONDS
    first_five_seen = False
    while time.monotonic() < deadline:
        got = Counter(a for m in stack.smtp.messages for a in m.rcpt_tos if a in burst_addresses)
        if not first_five_seen and sum(got.values()) >= 5:
            first_five_seen = True
            refused = run(test_send)
        if sum(got.values()) >= 8:
            break
        time.sleep(0.2)

    got = Counter(a for m in stack.smtp.messages for a in m.rcpt_tos if a in burst_addresses)
    assert got == Counter(burst_addresses), got  # all eight, once each
    deferred = [line for line in lines if "deferred: over the sending budget" in line]
    assert len(deferred) == 3, [line for line in lines if "] outbox: " in line]
    assert refused is not None and refused.status_code == 429, refused and refused.text
    assert 1 <= int(refused.headers["Retry-After"]) <= 60 and refused.json()["limit"] == "per_minute"
    shown = run(usage).json()
    assert shown["limits_in_effect"]["per_minute"] == 5 and shown["usage"]["today"] >= 8
