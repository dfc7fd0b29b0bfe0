"""The banner's bounce and open commands on the local stack (make run), as a new user follows them:
an invoice email to the bouncing demo address turns `bounced` once its report, read back from the
local IMAP server, is matched; the address is suppressed and the next email to it is refused with a
422 that says why; the demo company tracks opens, and fetching the pixel marks the entry `opened`."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from local.banner import banner
from local.bounce_back import BOUNCING_ADDRESS
from local.stack import LocalStack
from tests.support.stack import banner_commands, run_curl, running_stack

WAIT_SECONDS = 30
SECTION, UNTIL = "Bounces and opens:", "Connect accounts with OAuth"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("tracking")) as stack:
        yield stack


def eventually(check: Callable[[], Any]) -> Any:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.3)


def test_a_bounce_is_read_back_suppressed_and_the_next_email_refused(stack: LocalStack) -> None:
    send, bounced, suppressions, again, *_ = banner_commands(banner(stack), SECTION, UNTIL)

    sent = run_curl(send)
    assert sent.status_code == 200 and sent.json()["to"] == [BOUNCING_ADDRESS], sent.text

    items = eventually(lambda: run_curl(bounced).json()["items"])
    assert [e["id"] for e in items] == [sent.json()["id"]]
    [event] = items[0]["events"]
    assert event["type"] == "bounce" and event["detail"]["status"] == "5.1.1"
    listed = run_curl(suppressions).json()["items"]
    assert [(i["email"], i["reason"]) for i in listed] == [(BOUNCING_ADDRESS, "bounce")]
    refused = run_curl(again)
    assert refused.status_code == 422
    assert (
        refused.json()["errors"][0]["field"] == "to"
        and "hard bounce" in refused.json()["errors"][0]["message"]
    )


def test_fetching_the_pixel_marks_the_email_opened(stack: LocalStack) -> None:
    text = banner(stack)
    section = text.split(SECTION, 1)[1].split(UNTIL, 1)[0]
    curls = banner_commands(text, SECTION, UNTIL)
    send_to_dana, opened = curls[4], curls[6]
    pixel_command = next(line.strip() for line in section.splitlines() if "local.pixel_of" in line)

    sent = run_curl(send_to_dana)
    assert sent.status_code == 200, sent.text
    answer = subprocess.run(  # noqa: S602 - the banner's own command line, as a user pastes it
        pixel_command, shell=True, capture_output=True, text=True, timeout=30, check=False
    )
    assert answer.stdout.strip() == "200 image/gif", answer.stderr

    items = run_curl(opened).json()["items"]
    assert [e["id"] for e in items] == [sent.json()["id"]]
    [event] = items[0]["events"]
    assert event["type"] == "opened" and event["detail"]["count"] == 1
    forged = requests.get(f"{stack.api_url}/t/forged.token.gif", timeout=10)
    assert forged.status_code == 200 and forged.headers["content-type"] == "image/gif"


def test_ten_invoices_queued_in_one_request_are_all_sent(stack: LocalStack) -> None:
    batch, waiting, newest = banner_commands(banner(stack), "Email queue:", UNTIL)[:3]

    answer = run_curl(batch)

    assert answer.status_code == 202, answer.text
    ids = [item["email_id"] for item in answer.json()["items"]]
    assert len(ids) == 10 and all(item["status"] == "queued" for item in answer.json()["items"])
    assert eventually(lambda: run_curl(waiting).json()["items"] == [])
    sent = {e["id"]: e for e in run_curl(newest).json()["items"]}
    assert sorted(sent) == sorted(ids) and {e["status"] for e in sent.values()} == {"sent"}
