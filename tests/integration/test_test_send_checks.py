"""The checks of a test send (attachment, size_limit, spf, dmarc, dkim), through the API.

The test message goes to a real SMTP server on loopback (or SES on moto), and every DNS lookup to a
real DNS server on 127.0.0.1 (tests.support.dns_server) that MAILER_DNS_SERVERS points at.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from local.template import Template
from tests.support.api import Api, cold_start
from tests.support.dns_server import DnsTestServer
from tests.support.factories import smtp_settings
from tests.support.smtp import ScriptedHandler

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "billing@acme.example"
DOMAIN = "acme.example"
ORDER = ["attachment", "size_limit", "spf", "dmarc", "dkim"]
SPF = "v=spf1 ip4:127.0.0.1 -all"
DMARC = "v=DMARC1; p=reject; rua=mailto:dmarc@acme.example"
BUDGET_BOUND = 2.5  # the checks' 2 s, with room for a loaded machine; an upper bound, not a benchmark


@pytest.fixture
def dns_server(
    api: Api, template: Template, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., DnsTestServer]]:
    """Factory: a loopback DNS server serving `zone`, and the functions started cold with
    MAILER_DNS_SERVERS pointing at it."""
    started: list[DnsTestServer] = []

    def start(zone: dict[str, Any] | None = None, **marks: Any) -> DnsTestServer:
        server = DnsTestServer(zone, **marks).start()
        started.append(server)
        monkeypatch.setenv("MAILER_DNS_SERVERS", server.servers)
        cold_start(template)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


def settings_for(server, **changes: Any) -> dict[str, Any]:
    return smtp_settings(ACCOUNT, PASSWORD, port=server.port) | changes


def checks_of(body: dict[str, Any]) -> dict[str, dict[str, str]]:
    """The answer's checks by name, after checking they come in the documented order, each with the
    four fields."""
    assert [c["name"] for c in body["checks"]] == ORDER, body
    assert all(set(c) == {"name", "status", "detail", "hint"} for c in body["checks"])
    return {c["name"]: c for c in body["checks"]}


def statuses(body: dict[str, Any]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks_of(body).items()}


def saved_test(api: Api, settings: dict[str, Any]) -> dict[str, Any]:
    status, saved, _ = api.call("PUT", "/settings/company", settings)
    assert status == 200, saved
    status, body, _ = api.call("POST", "/settings/company/test", {})
    assert status == 200, body
    return body


def is_well_formed_pdf(data: bytes) -> bool:
    """Header, %%EOF, and a cross-reference table where startxref says, whose every entry points at
    the object it numbers: what a PDF reader checks before it shows a page."""
    found = re.search(rb"startxref\n(\d+)\n%%EOF\n$", data)
    if not data.startswith(b"%PDF-1.") or found is None:
        return False
    xref = int(found.group(1))
    table = re.match(rb"xref\n0 (\d+)\n0000000000 65535 f \n", data[xref:])
    if table is None:
        return False
    entries = data[xref + table.end() :].split(b"\n")[: int(table.group(1)) - 1]
    return all(
        data[int(entry[:10]) :].startswith(b"%d 0 obj\n" % number) for number, entry in enumerate(entries, 1)
    )


# --- the message -----------------------------------------------------------------------------------


def test_the_test_message_carries_a_pdf_of_about_50_kb(api, trust_local_ca, mail_server, dns_server):
    dns_server({DOMAIN: [SPF], f"_dmarc.{DOMAIN}": [DMARC]})

    body = saved_test(api, settings_for(mail_server))

    assert body["ok"] is True, body
    [received] = mail_server.messages
    [pdf] = list(received.parsed().iter_attachments())
    content = pdf.get_content()
    assert pdf.get_filename() == "test-invoice.pdf" and pdf.get_content_type() == "application/pdf"
    assert 45 * 1024 <= len(content) <= 60 * 1024
    assert is_well_formed_pdf(content)
    pages = int(re.search(rb"/Type/Pages/Kids\[[^\]]*\]/Count (\d+)", content).group(1))
    assert pages > 1 and content.count(b"/Type/Page/") == pages
    assert b"(Test invoice) Tj" in content
    assert "test-invoice.pdf" in received.parsed().get_body(("plain",)).get_content()
    attachment = checks_of(body)["attachment"]
    assert attachment["status"] == "pass" and f"{len(content) / 1024:.0f} KB PDF" in attachment["detail"]


# --- spf and dmarc -----------------------------------------------------------------------------------


def test_a_domain_with_spf_and_dmarc_passes_every_check_but_dkim(
    api, trust_local_ca, mail_server, dns_server
):
    server = dns_server({DOMAIN: [SPF], f"_dmarc.{DOMAIN}": [DMARC]})

    body = saved_test(api, settings_for(mail_server))

    assert body["ok"] is True
    assert statuses(body) == {
        "attachment": "pass",
        "size_limit": "pass",
        "spf": "pass",
        "dmarc": "pass",
        "dkim": "skipped",  # a server without preset: nothing to ask, a hint where to look
    }
    checks = checks_of(body)
    assert SPF in checks["spf"]["detail"] and "p=reject" in checks["dmarc"]["detail"]
    assert "DKIM" in checks["dkim"]["hint"]
    assert {(DOMAIN, "TXT"), (f"_dmarc.{DOMAIN}", "TXT")} <= set(server.queries)


def test_a_domain_without_spf_or_dmarc_warns_about_both(api, trust_local_ca, mail_server, dns_server):
    dns_server({})

    body = saved_test(api, settings_for(mail_server))

    assert body["ok"] is True  # the checks never change ok
    assert (statuses(body)["spf"], statuses(body)["dmarc"]) == ("warn", "warn")
    checks = checks_of(body)
    assert f"{DOMAIN} has no SPF record" in checks["spf"]["detail"]
    assert f"Add a TXT record at {DOMAIN}" in checks["spf"]["hint"]


def test_a_domain_without_dmarc_warns_with_the_record_to_add(api, trust_local_ca, mail_server, dns_server):
    dns_server({DOMAIN: [SPF]})

    body = saved_test(api, settings_for(mail_server))

    dmarc = checks_of(body)["dmarc"]
    assert statuses(body)["spf"] == "pass" and dmarc["status"] == "warn"
    assert "Gmail and Yahoo require DMARC" in dmarc["detail"]
    assert (
        dmarc["hint"] == f'Add a TXT record at _dmarc.{DOMAIN}: "v=DMARC1; p=none; rua=mailto:dmarc@{DOMAIN}"'
    )


def test_hardfail_spf_without_the_presets_include_fails(api, trust_local_ca, mail_server, dns_server):
    """An office365-preset profile; the test still goes to the loopback server, never to the preset's."""
    dns_server({DOMAIN: ["v=spf1 include:_spf.google.com -all"], f"_dmarc.{DOMAIN}": [DMARC]})

    body = saved_test(api, settings_for(mail_server, provider="office365"))

    assert body["ok"] is True and len(mail_server.messages) == 1
    checks = checks_of(body)
    assert checks["spf"]["status"] == "fail"
    assert "include:spf.protection.outlook.com" in checks["spf"]["detail"]
    assert checks["spf"]["hint"] == (
        f'Change the TXT record at {DOMAIN} to: "v=spf1 include:_spf.google.com '
        'include:spf.protection.outlook.com -all"'
    )
    assert checks["dkim"]["status"] == "skipped" and "Microsoft 365 Defender" in checks["dkim"]["hint"]


def test_a_dns_timeout_is_skipped_and_costs_at_most_the_budget(api, trust_local_ca, mail_server, dns_server):
    api.call("PUT", "/settings/company", settings_for(mail_server))
    dns_server({DOMAIN: [SPF], f"_dmarc.{DOMAIN}": [DMARC]})
    started = time.monotonic()
    answered = api.call("POST", "/settings/company/test", {})[1]
    answered_seconds = time.monotonic() - started

    silent = dns_server(silent=[DOMAIN, f"_dmarc.{DOMAIN}"])
    started = time.monotonic()
    body = api.call("POST", "/settings/company/test", {})[1]
    silent_seconds = time.monotonic() - started

    assert statuses(answered)["spf"] == "pass"
    assert body["ok"] is True
    checks = checks_of(body)
    assert (checks["spf"]["status"], checks["dmarc"]["status"]) == ("skipped", "skipped")
    assert checks["spf"]["detail"] == "DNS lookup failed"
    assert (DOMAIN, "TXT") in silent.queries  # asked, never answered
    assert silent_seconds - answered_seconds < BUDGET_BOUND


# --- the server --------------------------------------------------------------------------------------


def test_a_server_that_takes_small_messages_warns_naming_both_sizes(
    api, trust_local_ca, smtp_server, dns_server
):
    dns_server({DOMAIN: [SPF], f"_dmarc.{DOMAIN}": [DMARC]})
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD}, data_size_limit=5 * 1024 * 1024)

    body = saved_test(api, settings_for(server))

    assert body["ok"] is True  # the 50 KB test fits; a 20 MB invoice would not
    size = checks_of(body)["size_limit"]
    assert size["status"] == "warn"
    assert "up to 5 MB" in size["detail"] and "attachments up to 20 MB" in size["detail"]
    assert "Keep the attachments of one email below" in size["hint"]


def test_a_server_that_refuses_the_message_at_data_fails_the_attachment(
    api, trust_local_ca, smtp_server, dns_server
):
    dns_server({DOMAIN: [SPF], f"_dmarc.{DOMAIN}": [DMARC]})
    handler = ScriptedHandler(data_reply="554 5.7.1 Message refused: attachments are not allowed")
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD}, handler=handler)

    body = saved_test(api, settings_for(server))

    assert (body["ok"], body["stage"], body["smtp_code"]) == (False, "data", 554)
    assert statuses(body) == {
        "attachment": "fail",
        "size_limit": "skipped",
        "spf": "pass",
        "dmarc": "pass",
        "dkim": "skipped",
    }
    assert "refused the test message with a" in checks_of(body)["attachment"]["detail"]


def test_a_send_that_fails_before_the_message_skips_the_message_checks(
    api, trust_local_ca, mail_server, dns_server
):
    dns_server({DOMAIN: [SPF]})

    body = saved_test(api, settings_for(mail_server, password="wrong-password"))

    assert (body["ok"], body["category"]) == (False, "auth_failed")
    assert statuses(body) == {
        "attachment": "skipped",
        "size_limit": "skipped",
        "spf": "pass",  # what the domain publishes is worth knowing all the same
        "dmarc": "warn",
        "dkim": "skipped",
    }
    assert mail_server.messages == []


def test_settings_not_yet_saved_get_the_checks_too(api, trust_local_ca, mail_server, dns_server):
    dns_server({DOMAIN: [SPF]})

    status, body, _ = api.call(
        "POST", "/settings/test", settings_for(mail_server) | {"to": "me@acme.example"}
    )

    assert status == 200 and body["ok"] is True
    assert statuses(body) == {
        "attachment": "pass",
        "size_limit": "pass",
        "spf": "pass",
        "dmarc": "warn",
        "dkim": "skipped",
    }
    [received] = mail_server.messages
    assert [a.get_filename() for a in received.parsed().iter_attachments()] == ["test-invoice.pdf"]


# --- Amazon SES ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signing", "dkim"),
    [
        ({"NextSigningKeyLength": "RSA_2048_BIT"}, "pass"),  # moto: SUCCESS
        (None, "fail"),  # moto: NOT_STARTED
    ],
)
def test_an_ses_test_reports_the_identitys_dkim_status(api, aws, dns_server, signing, dkim):
    dns_server({DOMAIN: ["v=spf1 include:amazonses.com ~all"], f"_dmarc.{DOMAIN}": [DMARC]})
    identity: dict[str, Any] = {"EmailIdentity": DOMAIN}
    if signing:
        identity["DkimSigningAttributes"] = signing
    aws.client("sesv2").create_email_identity(**identity)

    body = saved_test(api, {"transport": "ses", "from_email": ACCOUNT, "from_name": "Acme"})

    assert body["ok"] is True, body
    checks = checks_of(body)
    assert checks["dkim"]["status"] == dkim
    assert (checks["spf"]["status"], checks["size_limit"]["status"]) == ("pass", "pass")
    assert "Amazon SES" in checks["spf"]["detail"] and "40 MB" in checks["size_limit"]["detail"]


def test_an_ses_identity_that_cannot_be_read_skips_dkim(api, aws, dns_server):
    dns_server({DOMAIN: ["v=spf1 -all"]})  # no identity: the send fails and the status is unknown

    body = saved_test(
        api, {"transport": "ses", "ses_region": "us-east-1", "from_email": ACCOUNT, "from_name": "Acme"}
    )

    assert (body["ok"], body["category"]) == (False, "ses_identity_not_verified")
    checks = checks_of(body)
    assert checks["dkim"]["status"] == "skipped" and "Amazon SES console" in checks["dkim"]["hint"]
    assert checks["spf"]["status"] == "fail" and "include:amazonses.com" in checks["spf"]["hint"]
    assert (checks["attachment"]["status"], checks["size_limit"]["status"]) == ("skipped", "skipped")
