"""read_reports against a real IMAP server (Dovecot on loopback): what it reads, what it leaves alone,
where the cursor goes, and how each way of failing is reported."""

from __future__ import annotations

import imaplib
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from local.smtp_server import free_port
from mailer.delivery.failures import DeliveryFailed
from mailer.delivery.guard import AddressGuard
from mailer.tracking.mailbox import (
    NEVER_READ,
    MailboxAccount,
    MailboxCursor,
    MailboxRead,
    classify_imap_error,
    read_reports,
)
from tests.support import dsn_samples
from tests.support.imap_server import PASSWORD, TOKEN, USER, ImapServer, start_imap_server
from tests.support.leaks import no_leaks
from tests.support.smtp import ScriptedServer, banner

LOOPBACK = AddressGuard.allowing("127.0.0.0/8", "::1/128")
TO = "nobody@example.org"


@pytest.fixture
def imap(tmp_path) -> Iterator[ImapServer]:
    server = start_imap_server(tmp_path)
    yield server
    server.stop()


def account(
    imap: ImapServer, security: str = "ssl", *, password: str | None = PASSWORD, token: str | None = None
) -> MailboxAccount:
    port = imap.imaps_port if security == "ssl" else imap.imap_port
    if token is not None:
        password = None
    return MailboxAccount("localhost", port, security, USER, password=password, oauth_token=token)


def read(
    imap: ImapServer,
    cursor: MailboxCursor = NEVER_READ,
    *,
    mailbox: MailboxAccount | None = None,
    ca_bundle: bool = True,
    **options,
) -> MailboxRead:
    return read_reports(
        mailbox or account(imap),
        cursor,
        timeout=5,
        extra_ca_bundle=str(imap.ca_bundle) if ca_bundle else None,
        guard=options.pop("guard", LOOPBACK),
        **options,
    )


def failure_of(imap: ImapServer, **options):
    with pytest.raises(DeliveryFailed) as caught:
        read(imap, **options)
    return caught.value


def sent_id(n: int) -> str:
    return f"<invoice-{n}@acme.example.com>"


def bounced(result: MailboxRead) -> list[tuple[int, str, str, str]]:
    return [(uid, r.message_id, r.recipient, r.action) for uid, r in result.reports]


def append(imap: ImapServer, raw: bytes, flags: tuple[str, ...] = (), **options) -> int:
    return imap.append(USER, PASSWORD, raw, flags, **options)


# --- what is read ----------------------------------------------------------------------------------


def test_reads_exactly_the_bounce_reports_and_fetches_no_other_mail(imap):
    # Given a mailbox with three bounces, a delay notice, a reply, an auto-reply and a read receipt
    uids = [
        append(imap, dsn_samples.postfix_bounce(sent_id(1), "a@example.org")),
        append(imap, dsn_samples.plain_reply(sent_id(1), "b@example.org")),
        append(imap, dsn_samples.exchange_online_ndr(sent_id(2), "c@example.org")),
        append(imap, dsn_samples.out_of_office(sent_id(2), "d@example.org")),
        append(imap, dsn_samples.read_receipt(sent_id(3), "e@example.org")),
        append(imap, dsn_samples.gmail_bounce(sent_id(4), "f@example.org")),
        append(imap, dsn_samples.postfix_delayed(sent_id(5), "g@example.org")),
    ]
    before = len(imap.sessions(at_least=len(uids)))

    # When the mailbox is read for the first time
    result = read(imap)

    # Then the reports are the DSNs' recipients, in UID order, and the cursor is past all the mail
    assert bounced(result) == [
        (uids[0], "invoice-1@acme.example.com", "a@example.org", "failed"),
        (uids[2], "invoice-2@acme.example.com", "c@example.org", "failed"),
        (uids[5], "invoice-4@acme.example.com", "f@example.org", "failed"),
        (uids[6], "invoice-5@acme.example.com", "g@example.org", "delayed"),
    ]
    # and the server fetched the bodies of the four DSNs and the read receipt (also a multipart/report)
    # only, deleted nothing, and the session ended with LOGOUT
    [session] = imap.sessions(at_least=before + 1)[before:]
    assert (session["body_count"], session["deleted"], session["expunged"]) == (5, 0, 0)
    assert result.cursor == MailboxCursor(imap.uidvalidity(USER, PASSWORD), max(uids))


def test_reading_marks_nothing_seen_and_changes_no_flag(imap):
    append(imap, dsn_samples.postfix_bounce(sent_id(1), TO))
    append(imap, dsn_samples.gmail_bounce(sent_id(2), TO), ("\\Flagged",))
    append(imap, dsn_samples.exchange_online_ndr(sent_id(3), TO), ("\\Seen",))
    append(imap, dsn_samples.plain_reply(sent_id(1), TO))
    before = imap.flags(USER, PASSWORD)

    result = read(imap)

    assert len(result.reports) == 3
    assert imap.flags(USER, PASSWORD) == before
    assert before == {1: frozenset(), 2: {"\\Flagged"}, 3: {"\\Seen"}, 4: frozenset()}


@pytest.mark.parametrize("security", ["ssl", "starttls"])
@pytest.mark.parametrize("sign_in", ["password", "xoauth2"])
def test_reads_over_ssl_and_starttls_with_a_password_or_a_token(imap, security, sign_in):
    uid = append(imap, dsn_samples.postfix_bounce(sent_id(1), TO))
    mailbox = account(imap, security, token=TOKEN if sign_in == "xoauth2" else None)

    result = read(imap, mailbox=mailbox)

    assert bounced(result) == [(uid, "invoice-1@acme.example.com", TO, "failed")]


# --- the cursor -----------------------------------------------------------------------------------


def test_second_read_with_the_returned_cursor_reads_nothing_new(imap):
    append(imap, dsn_samples.postfix_bounce(sent_id(1), TO))
    append(imap, dsn_samples.plain_reply(sent_id(1), TO))
    first = read(imap)

    second = read(imap, first.cursor)

    assert len(first.reports) == 1
    assert second == MailboxRead(reports=[], cursor=first.cursor)


def test_report_arriving_after_a_read_is_read_once(imap):
    append(imap, dsn_samples.postfix_bounce(sent_id(1), TO))
    first = read(imap)
    late = append(imap, dsn_samples.gmail_bounce(sent_id(2), "late@example.org"))

    second = read(imap, first.cursor)
    third = read(imap, second.cursor)

    assert bounced(second) == [(late, "invoice-2@acme.example.com", "late@example.org", "failed")]
    assert second.cursor.last_uid == late
    assert third.reports == [] and third.cursor == second.cursor


def test_cursor_moves_past_mail_that_is_not_a_report(imap):
    append(imap, dsn_samples.postfix_bounce(sent_id(1), TO))
    first = read(imap)
    reply = append(imap, dsn_samples.plain_reply(sent_id(1), TO))

    second = read(imap, first.cursor)

    assert second.reports == [] and second.cursor.last_uid == reply


def test_new_uidvalidity_starts_over(imap):
    # Given a folder read once
    imap.create_folder(USER, PASSWORD, "Bounces")
    for n in (1, 2):
        append(imap, dsn_samples.postfix_bounce(sent_id(n), TO), folder="Bounces")
    first = read(imap, folder="Bounces")
    # When the folder is deleted and made again (new UIDVALIDITY, UIDs from 1) and gets one report
    imap.recreate_folder(USER, PASSWORD, "Bounces")
    uid = append(imap, dsn_samples.gmail_bounce(sent_id(3), TO), folder="Bounces")

    second = read(imap, first.cursor, folder="Bounces")

    # Then the old cursor's UIDs mean nothing: the new folder is read from its start
    assert first.cursor.last_uid == 2 and uid == 1
    assert second.cursor.uidvalidity != first.cursor.uidvalidity
    assert bounced(second) == [(1, "invoice-3@acme.example.com", TO, "failed")]


def test_first_read_skips_mail_older_than_first_read_days_for_good(imap):
    old = datetime.now(UTC) - timedelta(days=30)
    append(imap, dsn_samples.postfix_bounce(sent_id(1), "old@example.org"), internal_date=old)
    recent = append(imap, dsn_samples.postfix_bounce(sent_id(2), "new@example.org"))
    append(imap, dsn_samples.postfix_bounce(sent_id(3), "older@example.org"), internal_date=old)

    first = read(imap, first_read_days=7)
    second = read(imap, first.cursor)

    assert [r.recipient for _, r in first.reports] == ["new@example.org"]
    assert first.cursor.last_uid == 3 and recent == 2
    assert second.reports == []


def test_max_messages_pages_through_the_reports_oldest_first(imap):
    expected = []
    for n in range(1, 6):
        expected.append(append(imap, dsn_samples.postfix_bounce(sent_id(n), f"r{n}@example.org")))
        append(imap, dsn_samples.plain_reply(sent_id(n), f"r{n}@example.org"))

    pages, cursor = [], NEVER_READ
    for _ in range(5):
        result = read(imap, cursor, max_messages=2)
        pages.append([uid for uid, _ in result.reports])
        cursor = result.cursor

    assert pages == [expected[0:2], expected[2:4], expected[4:5], [], []]
    assert cursor.last_uid == 10  # past the last reply too


def test_message_with_two_recipients_gives_two_reports_under_one_uid(imap):
    uid = append(imap, dsn_samples.two_recipients(sent_id(1), "a@example.org", "b@example.org"))

    result = read(imap, max_messages=1)

    assert bounced(result) == [
        (uid, "invoice-1@acme.example.com", "a@example.org", "failed"),
        (uid, "invoice-1@acme.example.com", "b@example.org", "delivered"),
    ]


# --- failures ------------------------------------------------------------------------------------


def assert_no_secret(error: DeliveryFailed, *secrets: str) -> None:
    shown = " ".join(
        [str(error), repr(error.failure), repr(error.extra()), str(error.failure.server_message or "")]
    )
    for secret in secrets:
        assert secret not in shown


def test_wrong_password_is_auth_failed_with_advice_and_no_password(imap):
    wrong = "not-the-password-42"

    error = failure_of(imap, mailbox=account(imap, password=wrong))

    assert (error.failure.stage, error.failure.category, error.failure.transient) == (
        "auth",
        "auth_failed",
        False,
    )
    assert "AUTHENTICATIONFAILED" in (error.failure.server_message or "")
    assert USER in error.failure.hint and "password" in error.failure.hint
    assert_no_secret(error, wrong)
    assert imap.logged("Aborted login by logging out")  # LOGOUT even after the refusal


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_good_token_signs_in_and_bad_token_is_auth_failed_without_the_token(imap, security):
    bad = "ya29.expired-token-9f8e7d"

    good = read(imap, mailbox=account(imap, security, token=TOKEN))
    error = failure_of(imap, mailbox=account(imap, security, token=bad))

    assert good.reports == [] and good.cursor.uidvalidity is not None
    assert (error.failure.stage, error.failure.category) == ("auth", "auth_failed")
    assert "token" in error.failure.hint and "IMAP" in error.failure.hint
    assert_no_secret(error, bad)


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_certificate_not_trusted_without_the_ca_bundle_is_a_certificate_failure(imap, security):
    error = failure_of(imap, mailbox=account(imap, security), ca_bundle=False)

    assert (error.failure.stage, error.failure.category) == ("tls", "certificate")
    assert "MAILER_EXTRA_CA_BUNDLE" in error.failure.hint
    assert_no_secret(error, PASSWORD)


def test_closed_port_is_connection_refused(imap):
    closed = free_port()

    error = failure_of(imap, mailbox=MailboxAccount("127.0.0.1", closed, "ssl", USER, password=PASSWORD))

    assert (error.failure.stage, error.failure.category, error.failure.transient) == (
        "connect",
        "connection_refused",
        True,
    )
    assert f"127.0.0.1:{closed}" in error.failure.hint and "993" in error.failure.hint


def test_internal_address_is_refused_without_a_connection(imap):
    # Given something listening on 127.0.0.2 (loopback, so no packet leaves the machine)
    with socket.create_server(("127.0.0.2", 0)) as listener:
        listener.setblocking(False)
        mailbox = MailboxAccount("127.0.0.2", listener.getsockname()[1], "ssl", USER, password=PASSWORD)

        # When the default guard (no network admitted) checks it
        error = failure_of(imap, mailbox=mailbox, guard=AddressGuard())

        # Then it is refused before any connection is made
        assert (error.failure.stage, error.failure.category) == ("connect", "address_not_allowed")
        with pytest.raises(BlockingIOError):
            listener.accept()


def test_ssl_on_the_starttls_port_says_to_choose_starttls(imap):
    mailbox = MailboxAccount("localhost", imap.imap_port, "ssl", USER, password=PASSWORD)

    error = failure_of(imap, mailbox=mailbox)

    assert (error.failure.stage, error.failure.category) == ("tls", "tls_handshake")
    assert "Choose starttls" in error.failure.hint


def test_starttls_on_the_imaps_port_times_out_at_connect(imap):
    mailbox = MailboxAccount("localhost", imap.imaps_port, "starttls", USER, password=PASSWORD)

    started = time.monotonic()
    with pytest.raises(DeliveryFailed) as caught:
        read_reports(mailbox, NEVER_READ, timeout=0.5, extra_ca_bundle=str(imap.ca_bundle), guard=LOOPBACK)

    assert (caught.value.failure.stage, caught.value.failure.category) == ("connect", "timeout")
    assert time.monotonic() - started < 3  # no LOGOUT waited for after the timeout


def test_missing_folder_is_a_read_failure_naming_it(imap):
    error = failure_of(imap, folder="Bounces")

    assert (error.failure.stage, error.failure.category) == ("read", "protocol")
    assert "Bounces" in (error.failure.server_message or "") and "folder" in error.failure.hint


def test_server_without_starttls_never_gets_the_password():
    received: list[bytes] = []

    def no_starttls(conn: socket.socket) -> None:
        conn.sendall(b"* OK plain only\r\n")
        tag = conn.recv(4096).split(b" ")[0]  # imaplib asks for CAPABILITY first
        conn.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
        while chunk := conn.recv(4096):
            received.append(chunk)

    with ScriptedServer(no_starttls) as server:
        mailbox = MailboxAccount("127.0.0.1", server.port, "starttls", USER, password=PASSWORD)
        with pytest.raises(DeliveryFailed) as caught:
            read_reports(mailbox, NEVER_READ, timeout=2, guard=LOOPBACK)

    assert (caught.value.failure.stage, caught.value.failure.category) == ("tls", "starttls_unavailable")
    assert b"LOGIN" not in b"".join(received) and PASSWORD.encode() not in b"".join(received)


def test_server_that_is_not_imap_is_a_protocol_failure_without_its_banner():
    with ScriptedServer(banner("220 mail.example.net ESMTP Postfix")) as server:
        mailbox = MailboxAccount("127.0.0.1", server.port, "starttls", USER, password=PASSWORD)
        with pytest.raises(DeliveryFailed) as caught:
            read_reports(mailbox, NEVER_READ, timeout=2, guard=LOOPBACK)

    assert (caught.value.failure.stage, caught.value.failure.category) == ("connect", "protocol")
    assert caught.value.failure.server_message is None and "not an IMAP server" in caught.value.failure.hint


def test_no_socket_is_left_open_after_a_read_or_a_failure(imap):
    append(imap, dsn_samples.postfix_bounce(sent_id(1), TO))

    with no_leaks():
        read(imap)
        for options in (
            {"mailbox": account(imap, password="wrong")},
            {"ca_bundle": False},
            {"mailbox": account(imap, "starttls"), "ca_bundle": False},
            {"folder": "Missing"},
        ):
            with pytest.raises(DeliveryFailed):
                read(imap, **options)


def test_password_a_server_echoes_back_is_hidden(server_tls, ca_bundle):
    def echoing_imaps(conn: socket.socket) -> None:
        with server_tls.wrap_socket(conn, server_side=True) as tls, tls.makefile("rb") as lines:
            tls.sendall(b"* OK ready\r\n")
            tag = lines.readline().split(b" ")[0]  # CAPABILITY
            tls.sendall(b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + b" OK done\r\n")
            login = lines.readline()  # TAG LOGIN "user" "password"
            tag, _, arguments = login.partition(b" LOGIN ")
            tls.sendall(tag + b" NO [AUTHENTICATIONFAILED] refused " + arguments.strip() + b"\r\n")
            lines.readline()  # LOGOUT

    with ScriptedServer(echoing_imaps) as server:
        mailbox = MailboxAccount("localhost", server.port, "ssl", USER, password=PASSWORD)
        with pytest.raises(DeliveryFailed) as caught:
            read_reports(mailbox, NEVER_READ, timeout=2, extra_ca_bundle=str(ca_bundle), guard=LOOPBACK)

    failure = caught.value.failure
    assert (failure.stage, failure.category) == ("auth", "auth_failed")
    assert "refused" in (failure.server_message or "") and "[hidden]" in (failure.server_message or "")
    assert_no_secret(caught.value, PASSWORD)
    assert caught.value.__cause__ is None  # the refusal, which quoted it, is not chained either


# --- what no loopback server shows ------------------------------------------------------------------


def test_unknown_host_name_is_a_dns_failure_without_a_lookup():
    mailbox = MailboxAccount("imap.nowhere.test", 993, "ssl", USER, password=PASSWORD)

    with pytest.raises(DeliveryFailed) as caught:
        read_reports(mailbox, NEVER_READ, timeout=2, guard=LOOPBACK)

    assert (caught.value.failure.stage, caught.value.failure.category) == ("connect", "dns")
    assert "imap.nowhere.test" in caught.value.failure.hint


@pytest.mark.parametrize(
    ("host", "advice"),
    [
        ("outlook.office365.com", "Manage email apps"),
        ("imap.gmail.com", "myaccount.google.com/apppasswords"),
        ("mail.example.net", "app password"),
    ],
)
def test_refused_password_gets_the_providers_advice(host, advice):
    refused = imaplib.IMAP4.error(b"[AUTHENTICATIONFAILED] Authentication failed.")

    failure = classify_imap_error(refused, "auth", MailboxAccount(host, 993, "ssl", USER, password="x"))

    assert (failure.category, failure.server_message) == (
        "auth_failed",
        "[AUTHENTICATIONFAILED] Authentication failed.",
    )
    assert advice in failure.hint and USER in failure.hint


@pytest.mark.parametrize("security", ["none", "opportunistic", "tls", ""])
def test_an_account_without_tls_cannot_be_made(security):
    with pytest.raises(ValueError, match="ssl or starttls"):
        MailboxAccount("imap.example.net", 143, security, USER, password=PASSWORD)


@pytest.mark.parametrize("field", ["username", "password", "oauth_token"])
def test_line_breaks_in_credentials_are_refused_naming_the_field(field):
    values = {"username": USER, "password": PASSWORD, field: "x\r\nA1 DELETE INBOX"}

    with pytest.raises(ValueError, match=field):
        MailboxAccount("imap.example.net", 993, "ssl", **values)


def test_account_repr_shows_no_secret():
    text = repr(MailboxAccount("imap.example.net", 993, "ssl", USER, password=PASSWORD, oauth_token=TOKEN))

    assert PASSWORD not in text and TOKEN not in text
