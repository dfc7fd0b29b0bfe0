"""Bounce reports read back over IMAP, end to end: a document email sent through a real SMTP server
on loopback, the DSN that Postfix, Exchange Online or Gmail would return put into the same
account's mailbox on a real IMAP server (Dovecot on loopback), BounceReaderFunction run as the
schedule runs it, and what a user then sees: the entry `bounced`, the address suppressed, the
reading's state in GET /settings/company, nothing in the mailbox changed."""

from __future__ import annotations

from typing import Any

import pytest

from local.events import FakeContext, Identity
from tests.support import dsn_samples
from tests.support.api import cold_start, load_function
from tests.support.factories import smtp_settings
from tests.support.imap_server import start_imap_server
from tests.support.steps import save_settings

ACCOUNT = "billing@acme.example"
PASSWORD = "Corr3ct-Horse-Battery"
DANA = "dana@customer.example"
DOCUMENT = {"type": "invoice", "number": "INV-1001", "customer_name": "Dana Whitfield", "amount": "120.00"}
OTHER = Identity(tenant_id="other-co", user_id="admin-2", email="admin@other.example")
OTHER_ACCOUNT = "billing@other.example"


@pytest.fixture
def imap(tmp_path, ca_bundle, monkeypatch, template):
    server = start_imap_server(tmp_path, users={ACCOUNT: PASSWORD, OTHER_ACCOUNT: PASSWORD}, tokens={})
    # The functions trust both test CAs: the SMTP server's and the IMAP server's.
    both = tmp_path / "both-cas.pem"
    both.write_text(ca_bundle.read_text() + server.ca_bundle.read_text())
    monkeypatch.setenv("MAILER_EXTRA_CA_BUNDLE", str(both))
    cold_start(template)
    yield server
    server.stop()
    cold_start(template)


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD, OTHER_ACCOUNT: PASSWORD})


def reading(mail_server, imap, account: str = ACCOUNT, **changes: Any) -> dict[str, Any]:
    return (
        smtp_settings(
            account,
            PASSWORD,
            port=mail_server.port,
            read_bounces=True,
            imap_host="127.0.0.1",
            imap_port=imap.imaps_port,
        )
        | changes
    )


@pytest.fixture
def company(api, mail_server, imap) -> dict[str, Any]:
    return save_settings(api, reading(mail_server, imap))


def send(api, to: str = DANA, **kwargs: Any) -> dict[str, Any]:
    status, entry, _ = api.call(
        "POST", "/documents/email", {"document": DOCUMENT, "to": [to], "sender": "company"}, **kwargs
    )
    assert status == 200, entry
    return entry


def read_bounces(template) -> dict[str, int]:
    return load_function(template, "BounceReaderFunction").lambda_handler({}, FakeContext())


def entry_of(api, email_id: str, **kwargs: Any) -> dict[str, Any]:
    status, body, _ = api.call("GET", f"/emails/{email_id}", **kwargs)
    assert status == 200
    return body


@pytest.mark.parametrize(
    "report", [dsn_samples.postfix_bounce, dsn_samples.exchange_online_ndr, dsn_samples.gmail_bounce]
)
def test_a_bounce_report_in_the_mailbox_marks_the_entry_bounced_and_suppresses(
    api, template, company, imap, report
):
    sent = send(api)
    imap.append(ACCOUNT, PASSWORD, dsn_samples.plain_reply(sent["message_id"], DANA))
    imap.append(ACCOUNT, PASSWORD, report(sent["message_id"], DANA))
    flags_before = imap.flags(ACCOUNT, PASSWORD)

    counts = read_bounces(template)

    assert counts == {"mailboxes": 1, "failed": 0, "recorded": 1}
    entry = entry_of(api, sent["id"])
    assert entry["delivery_status"] == "bounced"
    [event] = entry["events"]
    assert event["type"] == "bounce" and event["detail"]["source"] == "bounce_report"
    assert event["detail"]["status"].startswith("5.1.") and event["detail"]["recipients"] == [DANA]
    items = api.call("GET", "/suppressions")[1]["items"]
    assert [(i["email"], i["reason"], i["email_id"]) for i in items] == [(DANA, "bounce", sent["id"])]
    assert imap.flags(ACCOUNT, PASSWORD) == flags_before  # nothing marked read, nothing removed
    status, problem, _ = api.call(
        "POST", "/documents/email", {"document": DOCUMENT, "to": [DANA], "sender": "company"}
    )
    assert status == 422 and problem["errors"][0]["field"] == "to"


def test_each_report_is_read_once(api, template, company, imap):
    sent = send(api)
    imap.append(ACCOUNT, PASSWORD, dsn_samples.postfix_bounce(sent["message_id"], DANA))
    read_bounces(template)
    before = entry_of(api, sent["id"])

    assert read_bounces(template)["recorded"] == 0
    assert entry_of(api, sent["id"]) == before
    later = send(api, to="marcus@customer.example")
    imap.append(
        ACCOUNT, PASSWORD, dsn_samples.postfix_delayed(later["message_id"], "marcus@customer.example")
    )
    assert read_bounces(template)["recorded"] == 1
    assert entry_of(api, later["id"])["delivery_status"] == "delayed"
    assert api.call("GET", "/suppressions")[1]["items"][0]["email"] == DANA  # a delay suppresses nothing


def test_the_settings_show_how_reading_went(api, template, company, imap):
    view = api.call("GET", "/settings/company")[1]
    assert view["read_bounces"] is True and view["bounce_reading"]["status"] == "pending"

    sent = send(api)
    imap.append(ACCOUNT, PASSWORD, dsn_samples.gmail_bounce(sent["message_id"], DANA))
    read_bounces(template)

    reading_now = api.call("GET", "/settings/company")[1]["bounce_reading"]
    assert reading_now["status"] == "ok" and reading_now["reports_read"] == 1
    assert (reading_now["imap_host"], reading_now["imap_port"]) == ("127.0.0.1", imap.imaps_port)
    assert reading_now["checked_at"] and reading_now["error"] is None


def test_a_mailbox_that_refuses_the_sign_in_is_shown_classified(
    api, template, mail_server, tmp_path, ca_bundle, monkeypatch
):
    (tmp_path / "own").mkdir()
    other = start_imap_server(tmp_path / "own", users={ACCOUNT: "An0ther-pass"}, tokens={})
    try:
        both = tmp_path / "own-cas.pem"
        both.write_text(ca_bundle.read_text() + other.ca_bundle.read_text())
        monkeypatch.setenv("MAILER_EXTRA_CA_BUNDLE", str(both))
        cold_start(template)
        save_settings(api, reading(mail_server, other))

        assert read_bounces(template)["failed"] == 1

        view = api.call("GET", "/settings/company")[1]
        error = view["bounce_reading"]["error"]
        assert view["bounce_reading"]["status"] == "failed"
        assert (error["stage"], error["category"]) == ("auth", "auth_failed")
        assert PASSWORD not in str(view)
    finally:
        other.stop()
        cold_start(template)


def test_a_report_naming_another_companys_mail_changes_nothing(api, template, company, mail_server, imap):
    body = reading(mail_server, imap, OTHER_ACCOUNT, read_bounces=False)
    assert api.call("PUT", "/settings/company", body, identity=OTHER)[0] == 200
    theirs = send(api, identity=OTHER)
    imap.append(ACCOUNT, PASSWORD, dsn_samples.postfix_bounce(theirs["message_id"], DANA))

    assert read_bounces(template)["recorded"] == 0

    assert entry_of(api, theirs["id"], identity=OTHER)["delivery_status"] == "sent"
    assert api.call("GET", "/suppressions", identity=OTHER)[1]["items"] == []
    assert api.call("GET", "/suppressions")[1]["items"] == []


def test_switching_reading_off_takes_the_mailbox_off_the_list(api, template, company, mail_server, imap):
    save_settings(api, reading(mail_server, imap, read_bounces=False))

    assert read_bounces(template) == {"mailboxes": 0, "failed": 0, "recorded": 0}
    assert "bounce_reading" not in api.call("GET", "/settings/company")[1] or (
        api.call("GET", "/settings/company")[1]["bounce_reading"] is None
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"imap_host": None, "host": "127.0.0.1"}, "imap_host"),  # no preset: nowhere to read
        ({"imap_host": "127.0.0.2"}, "imap_host"),  # internal, not admitted
    ],
)
def test_reading_needs_a_mailbox_it_may_reach(api, mail_server, imap, changes, field):
    status, problem, _ = api.call("PUT", "/settings/company", reading(mail_server, imap) | changes)

    assert status == 422 and [e["field"] for e in problem["errors"]] == [field]


def test_ses_senders_do_not_read_bounces(api, aws):
    body = {"transport": "ses", "from_email": ACCOUNT, "ses_region": "us-east-1", "read_bounces": True}

    status, problem, _ = api.call("PUT", "/settings/company", body)

    assert status == 422 and [e["field"] for e in problem["errors"]] == ["read_bounces"]
