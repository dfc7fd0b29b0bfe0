"""The banner's test send on the local stack (make run), as a new user pastes it: the answer's checks
come from the stack's DNS server, where demo.test has an SPF record and no DMARC record."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.banner import banner
from local.stack import LocalStack
from tests.support.stack import banner_commands, run_curl, running_stack

TITLE = "# Send a test message with them"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("checks")) as stack:
        yield stack


def test_the_banners_test_send_warns_about_dmarc_with_the_record_to_add(stack: LocalStack) -> None:
    assert stack.dns is not None and stack.smtp is not None
    test, *_ = banner_commands(banner(stack), TITLE)
    before = len(stack.smtp.messages)

    answer = run_curl(test)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["ok"] is True, body
    checks = {c["name"]: c for c in body["checks"]}
    assert [c["name"] for c in body["checks"]] == ["attachment", "size_limit", "spf", "dmarc", "dkim"]
    assert checks["spf"]["status"] == "pass" and "v=spf1 ip4:127.0.0.1 ~all" in checks["spf"]["detail"]
    assert checks["dmarc"]["status"] == "warn"
    assert checks["dmarc"]["hint"] == (
        'Add a TXT record at _dmarc.demo.test: "v=DMARC1; p=none; rua=mailto:dmarc@demo.test"'
    )
    assert (checks["attachment"]["status"], checks["size_limit"]["status"]) == ("pass", "pass")
    assert {("demo.test", "TXT"), ("_dmarc.demo.test", "TXT")} <= set(stack.dns.queries)
    (received,) = stack.smtp.messages[before:]
    assert [a.get_filename() for a in received.parsed().iter_attachments()] == ["test-invoice.pdf"]
