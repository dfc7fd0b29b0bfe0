"""The spf, dmarc and dkim checks of a test send, answered by a real DNS server on loopback.

Every lookup goes to tests.support.dns_server on 127.0.0.1; no test sends a query anywhere else.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import dns.message
import dns.query
import pytest

from mailer.settings.checks import Check, DnsLookup, dns_checks, parse_dns_servers
from tests.support.dns_server import DnsTestServer, unused_udp_port
from tests.support.leaks import no_leaks

M365_SPF = "v=spf1 include:spf.protection.outlook.com -all"
BUDGET_BOUND = 2.5  # the 2 s budget, with room for a loaded machine; an upper bound, not a benchmark


@pytest.fixture
def dns_server() -> Iterator[Callable[..., DnsTestServer]]:
    """Factory for loopback DNS servers; every one started is stopped after the test."""
    started: list[DnsTestServer] = []

    def start(zone: dict[str, Any] | None = None, **marks: Any) -> DnsTestServer:
        server = DnsTestServer(zone, **marks).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def checks_of(server: DnsTestServer, domain: str, provider: str | None, **kw: Any) -> dict[str, Check]:
    found = dns_checks(domain, provider, resolver=DnsLookup(server.servers), **kw)
    assert [c.name for c in found] == ["spf", "dmarc", "dkim"]
    return {c.name: c for c in found}


# --- spf -------------------------------------------------------------------------------------------


def test_spf_missing_warns_with_the_record_to_add(dns_server):
    server = dns_server({"example.com": ["google-site-verification=abc123"]})

    spf = checks_of(server, "example.com", "office365")["spf"]

    assert spf.status == "warn"
    assert "has no SPF record" in spf.detail
    assert spf.hint == 'Add a TXT record at example.com: "v=spf1 include:spf.protection.outlook.com ~all"'
    assert ("example.com", "TXT") in server.queries


def test_spf_missing_on_a_domain_that_does_not_exist_warns(dns_server):
    server = dns_server({})

    assert checks_of(server, "nowhere.test", "gmail")["spf"].status == "warn"


def test_two_spf_records_fail_as_a_permanent_error(dns_server):
    server = dns_server({"example.com": [M365_SPF, "v=spf1 include:_spf.google.com ~all"]})

    spf = checks_of(server, "example.com", "office365")["spf"]

    assert spf.status == "fail"
    assert "2 SPF records" in spf.detail
    assert "permerror" in spf.detail
    assert "Merge them into one" in spf.hint


def test_spf_record_split_into_strings_is_read_joined(dns_server):
    # Given a record sent as two strings, and one long enough that the server splits it at 255 bytes
    ips = " ".join(f"ip4:192.0.2.{n}" for n in range(1, 25))
    long_record = f"v=spf1 {ips} include:spf.protection.outlook.com -all"
    server = dns_server(
        {
            "split.example.com": [("v=spf1 include:spf.protection.", "outlook.com -all")],
            "long.example.com": [long_record],
        }
    )
    wire = dns.query.udp(dns.message.make_query("long.example.com", "TXT"), "127.0.0.1", 2, port=server.port)
    assert len(wire.answer[0][0].strings) == 2  # the server really sends the long one in two strings

    # Then both are one record that names Microsoft 365
    assert checks_of(server, "split.example.com", "office365")["spf"].status == "pass"
    long_spf = checks_of(server, "long.example.com", "office365")["spf"]
    assert long_spf.status == "pass"
    assert long_record in long_spf.detail


def test_spf_without_the_preset_include_and_softfail_warns(dns_server):
    server = dns_server({"example.com": ["v=spf1 mx include:_spf.google.com ~all"]})

    spf = checks_of(server, "example.com", "office365")["spf"]

    assert spf.status == "warn"
    assert "does not name Microsoft 365 / Office 365 (include:spf.protection.outlook.com)" in spf.detail
    assert spf.hint == (
        "Change the TXT record at example.com to: "
        '"v=spf1 mx include:_spf.google.com include:spf.protection.outlook.com ~all"'
    )


def test_spf_without_the_preset_include_and_hardfail_fails(dns_server):
    server = dns_server({"example.com": ["v=spf1 include:_spf.google.com -all"]})

    spf = checks_of(server, "example.com", "office365")["spf"]

    assert spf.status == "fail"
    assert "ends in -all" in spf.detail
    assert "include:_spf.google.com include:spf.protection.outlook.com -all" in spf.hint


def test_spf_naming_the_preset_passes(dns_server):
    server = dns_server({"example.com": ["v=spf1 include:_spf.google.com ~all", "other=text"]})

    spf = checks_of(server, "example.com", "gmail")["spf"]

    assert spf.status == "pass"
    assert "include:_spf.google.com" in spf.detail


def test_spf_redirect_to_the_preset_domain_passes(dns_server):
    server = dns_server({"example.com": ["v=spf1 redirect=_spf.google.com"]})

    assert checks_of(server, "example.com", "gmail_relay")["spf"].status == "pass"


def test_spf_for_ses_checks_amazonses(dns_server):
    server = dns_server({"example.com": ["v=spf1 include:amazonses.com ~all"], "other.test": [M365_SPF]})

    assert checks_of(server, "example.com", None, ses_dkim="SUCCESS")["spf"].status == "pass"
    other = checks_of(server, "other.test", "ses_smtp_eu_west_1")["spf"]
    assert other.status == "fail"
    assert "custom MAIL FROM" in other.hint


def test_spf_of_a_server_without_preset_passes_when_one_record_exists(dns_server):
    server = dns_server({"example.com": ["v=spf1 a mx -all"]})

    assert checks_of(server, "example.com", None)["spf"].status == "pass"


# --- dmarc -----------------------------------------------------------------------------------------


def test_dmarc_missing_warns_with_the_reason_and_a_starter_record(dns_server):
    server = dns_server({"example.com": [M365_SPF]})

    dmarc = checks_of(server, "example.com", "office365")["dmarc"]

    assert dmarc.status == "warn"
    assert "Gmail and Yahoo require DMARC of bulk senders" in dmarc.detail
    assert "550 5.7.515" in dmarc.detail
    assert dmarc.hint == (
        'Add a TXT record at _dmarc.example.com: "v=DMARC1; p=none; rua=mailto:dmarc@example.com"'
    )
    assert ("_dmarc.example.com", "TXT") in server.queries


def test_dmarc_p_none_passes_as_monitoring_only(dns_server):
    server = dns_server({"_dmarc.example.com": ["v=DMARC1; p=none; rua=mailto:dmarc@example.com"]})

    dmarc = checks_of(server, "example.com", "office365")["dmarc"]

    assert dmarc.status == "pass"
    assert "monitoring only" in dmarc.detail


def test_dmarc_p_reject_passes(dns_server):
    server = dns_server({"_dmarc.example.com": ["v=DMARC1;p=reject;adkim=s"]})

    dmarc = checks_of(server, "example.com", "office365")["dmarc"]

    assert dmarc.status == "pass"
    assert "p=reject" in dmarc.detail
    assert "monitoring" not in dmarc.detail


def test_dmarc_of_a_subdomain_comes_from_its_parent(dns_server):
    server = dns_server({"_dmarc.example.com": ["v=DMARC1; p=quarantine; sp=reject"]})

    dmarc = checks_of(server, "billing.example.com", "office365")["dmarc"]

    assert dmarc.status == "pass"
    assert "_dmarc.example.com, which covers billing.example.com with p=reject" in dmarc.detail
    assert ("_dmarc.billing.example.com", "TXT") in server.queries


def test_text_that_is_not_a_dmarc_record_does_not_count(dns_server):
    server = dns_server({"_dmarc.example.com": ["v=DMARC10; p=reject", "site-verification=1"]})

    assert checks_of(server, "example.com", "office365")["dmarc"].status == "warn"


# --- dkim ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ses_status", "expected"),
    [
        ("SUCCESS", "pass"),
        ("PENDING", "warn"),
        ("FAILED", "fail"),
        ("TEMPORARY_FAILURE", "fail"),
        ("NOT_STARTED", "fail"),
    ],
)
def test_dkim_follows_the_ses_identity_status(dns_server, ses_status, expected):
    server = dns_server({"example.com": ["v=spf1 include:amazonses.com ~all"]})

    dkim = checks_of(server, "example.com", None, ses_dkim=ses_status)["dkim"]

    assert dkim.status == expected
    if expected != "pass":
        assert "Amazon SES console" in dkim.hint
        assert "DomainKeys Identified Mail (DKIM)" in dkim.hint


@pytest.mark.parametrize(
    ("provider", "where"),
    [
        (
            "office365",
            "Microsoft 365 Defender portal (security.microsoft.com): Email authentication settings > DKIM",
        ),
        ("gmail", "Google Admin console: Apps > Google Workspace > Gmail > Authenticate email"),
        ("ses_smtp_us_east_1", "Amazon SES console"),
        ("zoho", "the DKIM settings of Zoho Mail"),
        (None, "the DKIM settings of your mail provider"),
    ],
)
def test_dkim_of_smtp_presets_is_skipped_with_where_to_turn_it_on(dns_server, provider, where):
    server = dns_server({"example.com": [M365_SPF]})

    dkim = checks_of(server, "example.com", provider)["dkim"]

    assert dkim.status == "skipped"
    assert where in dkim.hint


# --- lookups that fail -----------------------------------------------------------------------------


def test_a_silent_name_is_skipped_and_the_call_stays_within_the_budget(dns_server):
    server = dns_server({"example.com": [M365_SPF]}, silent=["_dmarc.example.com"])

    started = time.monotonic()
    found = checks_of(server, "example.com", "office365")
    elapsed = time.monotonic() - started

    assert found["spf"].status == "pass"
    assert found["dmarc"].status == "skipped"
    assert found["dmarc"].detail == "DNS lookup failed"
    assert ("_dmarc.example.com", "TXT") in server.queries  # asked, never answered
    assert elapsed < BUDGET_BOUND


def test_once_the_budget_is_spent_later_lookups_fail_without_a_query(dns_server):
    server = dns_server({"_dmarc.example.com": ["v=DMARC1; p=none"]}, silent=["example.com"])

    started = time.monotonic()
    found = checks_of(server, "example.com", "office365")
    elapsed = time.monotonic() - started

    assert found["spf"].status == "skipped"
    assert found["dmarc"].status == "skipped"  # its record exists, but no time was left to ask
    assert ("_dmarc.example.com", "TXT") not in server.queries
    assert elapsed < BUDGET_BOUND


def test_servfail_is_skipped_without_spending_the_budget(dns_server):
    server = dns_server({"example.com": [M365_SPF]}, servfail=["_dmarc.example.com"])
    lookup = DnsLookup(server.servers)

    found = {c.name: c for c in dns_checks("example.com", "office365", resolver=lookup)}

    assert found["spf"].status == "pass"
    assert found["dmarc"].status == "skipped"
    assert found["dmarc"].detail == "DNS lookup failed"
    assert lookup.remaining() > 1.0  # a SERVFAIL is an answer; nothing waited for a timeout


def test_no_server_listening_is_skipped_within_the_budget():
    lookup = DnsLookup(f"127.0.0.1:{unused_udp_port()}")

    started = time.monotonic()
    found = {c.name: c for c in dns_checks("example.com", "office365", resolver=lookup)}

    assert found["spf"].status == "skipped"
    assert found["dmarc"].status == "skipped"
    assert found["dkim"].status == "skipped"
    assert time.monotonic() - started < BUDGET_BOUND


def test_a_from_address_without_domain_skips_every_check(dns_server):
    server = dns_server({})

    found = checks_of(server, "", "office365")

    assert {c.status for c in found.values()} == {"skipped"}
    assert server.queries == []


def test_lookups_leave_no_thread_or_socket_behind():
    with no_leaks():
        with DnsTestServer({"example.com": [M365_SPF]}, silent=["_dmarc.example.com"]) as server:
            found = checks_of(server, "example.com", "office365")
    assert found["spf"].status == "pass"


# --- MAILER_DNS_SERVERS ----------------------------------------------------------------------------


def test_the_next_server_answers_when_the_first_fails(dns_server):
    broken = dns_server(servfail=["example.com", "_dmarc.example.com"])
    good = dns_server({"example.com": [M365_SPF], "_dmarc.example.com": ["v=DMARC1; p=reject"]})
    lookup = DnsLookup(f"{broken.servers},{good.servers}")

    found = {c.name: c.status for c in dns_checks("example.com", "office365", resolver=lookup)}

    assert found == {"spf": "pass", "dmarc": "pass", "dkim": "skipped"}
    assert ("example.com", "TXT") in broken.queries
    assert ("example.com", "TXT") in good.queries


def test_the_next_server_answers_when_the_first_is_silent(dns_server):
    silent = dns_server(silent=["example.com"])
    good = dns_server({"example.com": [M365_SPF]})
    lookup = DnsLookup(f"{silent.servers},{good.servers}")

    assert lookup.txt("example.com") == [M365_SPF]
    assert ("example.com", "TXT") in silent.queries


@pytest.mark.parametrize(
    ("text", "servers"),
    [
        ("127.0.0.1:5353", [("127.0.0.1", 5353)]),
        ("127.0.0.1:5353, 127.0.0.2:53", [("127.0.0.1", 5353), ("127.0.0.2", 53)]),
        ("127.0.0.1", [("127.0.0.1", 53)]),
        ("[::1]:5353", [("::1", 5353)]),
        ("", []),
        (None, []),
    ],
)
def test_mailer_dns_servers_parsing(text, servers):
    assert parse_dns_servers(text) == servers


@pytest.mark.parametrize(
    "text", ["dns.example.com:53", "127.0.0.1:0", "127.0.0.1:99999", "127.0.0.1:x", "[::1]x"]
)
def test_mailer_dns_servers_rejects_bad_text_naming_the_variable(text):
    with pytest.raises(ValueError, match="MAILER_DNS_SERVERS"):
        DnsLookup(text)
