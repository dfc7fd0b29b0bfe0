"""Test account settings through the handlers, against real SMTP servers on loopback."""

from __future__ import annotations

import json
import logging

import pytest

from local.events import USER
from mailer.dal.sent_log_table import SentLogStore
from tests.support.factories import smtp_settings

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "billing@acme.example"


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


def company_settings(server, **changes) -> dict:
    wording = {"from_name": "Acme Plumbing & Heating", "reply_to": "office@acme.example"}
    return smtp_settings(ACCOUNT, PASSWORD, port=server.port, **wording) | changes


def logged_entry(entry_id: str):
    return SentLogStore("local-SentLogTable", retention_days=90).get("demo", entry_id)


def test_saved_settings_test_delivers_from_the_configured_address(api, trust_local_ca, mail_server):
    api.call("PUT", "/settings/company", company_settings(mail_server))

    status, body, _ = api.call("POST", "/settings/company/test", {})

    assert status == 200 and body["ok"] is True, body
    assert body["to"] == "admin@demo.test" and body["message_id"].endswith("@acme.example>")
    [received] = mail_server.messages
    message = received.parsed()
    assert message["From"] == "Acme Plumbing & Heating <billing@acme.example>"
    assert message["To"] == "admin@demo.test" and message["Reply-To"] == "office@acme.example"
    assert message["Message-ID"] == body["message_id"]
    assert received.tls and received.auth_user == ACCOUNT
    assert received.mail_from == ACCOUNT and received.rcpt_tos == ("admin@demo.test",)
    assert f"127.0.0.1:{mail_server.port}" in message.get_body(("plain",)).get_content()


def test_test_is_recorded_in_the_sent_log(api, trust_local_ca, mail_server):
    api.call("PUT", "/settings/company", company_settings(mail_server))

    _, body, _ = api.call("POST", "/settings/company/test", {"to": "someone@acme.example"})

    entry = logged_entry(body["email_id"])
    assert entry.kind == "test" and entry.status == "sent" and entry.profile == "company"
    assert entry.to == ["someone@acme.example"] and entry.from_ == ACCOUNT
    assert entry.message_id == body["message_id"] and entry.error is None and entry.sent_at


def test_wrong_password_answers_auth_failed_with_app_password_hint(api, trust_local_ca, mail_server):
    api.call("PUT", "/settings/company", company_settings(mail_server, password="wrong-password"))

    status, body, _ = api.call("POST", "/settings/company/test", {})

    assert status == 200
    assert body["ok"] is False
    assert (body["stage"], body["category"], body["smtp_code"], body["transient"]) == (
        "auth",
        "auth_failed",
        535,
        False,
    )
    assert "app password" in body["hint"]
    assert mail_server.messages == []
    entry = logged_entry(body["email_id"])
    assert entry.status == "failed" and entry.error["category"] == "auth_failed" and entry.sent_at is None


def test_test_with_settings_not_yet_saved(api, trust_local_ca, mail_server):
    status, body, _ = api.call(
        "POST", "/settings/test", company_settings(mail_server) | {"to": "me@acme.example"}
    )

    assert status == 200 and body["ok"] is True
    assert mail_server.messages[0].rcpt_tos == ("me@acme.example",)
    assert api.call("GET", "/settings/company")[0] == 404


def test_unsaved_test_borrows_the_saved_password_when_asked(api, trust_local_ca, mail_server):
    api.call("PUT", "/settings/company", company_settings(mail_server))
    changed = {
        k: v for k, v in company_settings(mail_server, from_name="Acme Accounts").items() if k != "password"
    }

    _status, body, _ = api.call("POST", "/settings/test", changed | {"profile": "company"})

    assert body["ok"] is True, body
    assert mail_server.messages[0].parsed()["From"] == "Acme Accounts <billing@acme.example>"


def test_non_admin_cannot_borrow_the_company_password(api, trust_local_ca, mail_server):
    api.call("PUT", "/settings/company", company_settings(mail_server))
    changed = {k: v for k, v in company_settings(mail_server, host="localhost").items() if k != "password"}

    status, body, _ = api.call("POST", "/settings/test", changed | {"profile": "company"}, identity=USER)

    assert status == 403 and body["status"] == 403
    assert mail_server.messages == []


def test_non_admin_tests_company_settings_only_towards_themselves(api, trust_local_ca, mail_server):
    api.call("PUT", "/settings/company", company_settings(mail_server))

    refused = api.call("POST", "/settings/company/test", {"to": "stranger@elsewhere.example"}, identity=USER)
    allowed = api.call("POST", "/settings/company/test", {}, identity=USER)

    assert refused[0] == 403
    assert allowed[0] == 200 and allowed[1]["ok"] is True
    assert [m.rcpt_tos for m in mail_server.messages] == [("tech@demo.test",)]


def test_testing_settings_that_do_not_exist_is_404(api):
    status, body, _ = api.call("POST", "/settings/me/test", {})

    assert status == 404 and "No me email settings" in body["detail"]


def test_password_changed_elsewhere_is_fetched_again_after_auth_failure(api, trust_local_ca, smtp_server):
    users = {ACCOUNT: PASSWORD}
    server = smtp_server("starttls", users=users)
    api.call("PUT", "/settings/company", company_settings(server))
    assert api.call("POST", "/settings/company/test", {})[1]["ok"] is True  # the test function caches it

    users[ACCOUNT] = "Rotated-Pa55word"
    api.call("PUT", "/settings/company", company_settings(server, password="Rotated-Pa55word"))
    _status, body, _ = api.call("POST", "/settings/company/test", {})

    assert body["ok"] is True, body
    assert len(server.messages) == 2


def test_recipient_with_line_break_is_422(api):
    status, body, _ = api.call("POST", "/settings/company/test", {"to": "a@acme.example\r\nBcc: x@y.example"})

    assert status == 422 and [e["field"] for e in body["errors"]] == ["to"]


@pytest.mark.parametrize("raw", ["", "{", "[1,2]", '{"to": 5}', '{"to": "nobody"}', "\udcff"])
def test_malformed_test_body_is_4xx(api, raw):
    status, body, headers = api.call("POST", "/settings/company/test", raw_body=raw)

    assert 400 <= status < 500 and headers["content-type"] == "application/problem+json" and body["errors"]


def test_ses_settings_test_sends_through_ses(api, aws):
    aws.client("sesv2").create_email_identity(EmailIdentity="acme.example")
    api.call("PUT", "/settings/company", {"transport": "ses", "from_email": ACCOUNT, "from_name": "Acme"})

    _status, body, _ = api.call("POST", "/settings/company/test", {})

    assert body["ok"] is True, body
    assert body["message_id"].endswith("@email.amazonses.com>")


def test_ses_unverified_sender_is_explained(api, aws):
    api.call("PUT", "/settings/company", {"transport": "ses", "from_email": ACCOUNT})

    _, body, _ = api.call("POST", "/settings/company/test", {})

    assert body["ok"] is False and body["category"] == "ses_identity_not_verified"
    assert "Verify" in body["hint"]


def test_password_never_appears_in_responses_or_log_lines(api, trust_local_ca, mail_server, capsys, caplog):
    """Save, fail a test, re-save, trip validation: the password shows up in no response and no log line."""
    caplog.set_level(logging.DEBUG)
    logging.getLogger().setLevel(logging.DEBUG)
    secret = "Sekr1t-Do-Not-Log"
    responses = [
        api.call("PUT", "/settings/company", company_settings(mail_server, password=secret)),
        api.call("POST", "/settings/company/test", {}),
        api.call("POST", "/settings/test", company_settings(mail_server, password=secret)),
        api.call("PUT", "/settings/company", company_settings(mail_server, password=secret, port="bad")),
        api.call("PUT", "/settings/company", company_settings(mail_server, password=secret * 100)),
        api.call("POST", "/settings/test", company_settings(mail_server, password=secret, extra_field=1)),
    ]
    assert responses[1][1]["category"] == "auth_failed"
    assert responses[3][0] == 422 and responses[4][0] == 422

    captured = capsys.readouterr()
    everything = [captured.out, captured.err, caplog.text, *(json.dumps(r[1]) for r in responses)]
    assert captured.out  # the handlers did log (structured JSON lines on stdout)
    for text in everything:
        assert secret not in text
        assert PASSWORD not in text
