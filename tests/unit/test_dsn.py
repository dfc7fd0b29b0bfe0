"""parse_report over the bounce reports real servers send, mail that only resembles them, and junk."""

from __future__ import annotations

import base64
import random
import time
from email.message import Message

import pytest

from mailer.tracking.dsn import MAX_RECIPIENTS, BounceReport, parse_report
from tests.support import dsn_samples

SENT_ID = "<20261201090000.invoice-1001@acme.example.com>"
ID = "20261201090000.invoice-1001@acme.example.com"
TO = "nobody@example.org"


def test_postfix_bounce_gives_every_field():
    assert parse_report(dsn_samples.postfix_bounce(SENT_ID, TO)) == [
        BounceReport(
            message_id=ID,
            recipient=TO,
            action="failed",
            status="5.1.1",
            diagnostic="550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown in "
            "virtual mailbox table",
            reporting_mta="mail.acme.example.com",
            permanent=True,
        )
    ]


@pytest.mark.parametrize("returned", ["message", "headers"])
def test_exchange_online_ndr_gives_every_field_whichever_part_returns_the_original(returned):
    assert parse_report(dsn_samples.exchange_online_ndr(SENT_ID, TO, returned=returned)) == [
        BounceReport(
            message_id=ID,
            recipient=TO,
            action="failed",
            status="5.1.10",
            diagnostic="550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address "
            "lookup",
            reporting_mta="AM0PR01MB1234.eurprd01.prod.outlook.com",
            permanent=True,
        )
    ]


def test_gmail_bounce_gives_every_field_with_the_folded_diagnostic_joined():
    assert parse_report(dsn_samples.gmail_bounce(SENT_ID, TO)) == [
        BounceReport(
            message_id=ID,
            recipient=TO,
            action="failed",
            status="5.1.1",
            diagnostic="550-5.1.1 The email account that you tried to reach does not exist. Please try "
            "550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1 unnecessary "
            "spaces. For more information, go to 550 5.1.1 https://support.google.com/mail/?p=NoSuchUser "
            "a1si123 - gsmtp",
            reporting_mta="googlemail.com",
            permanent=True,
        )
    ]


def test_delayed_report_is_not_permanent():
    assert parse_report(dsn_samples.postfix_delayed(SENT_ID, TO)) == [
        BounceReport(
            message_id=ID,
            recipient=TO,
            action="delayed",
            status="4.4.7",
            diagnostic="delivery temporarily suspended: connect to mx.example.org[192.0.2.25]:25: "
            "Connection timed out",
            reporting_mta="mail.acme.example.com",
            permanent=False,
        )
    ]


def test_report_for_two_recipients_gives_one_report_each_in_order():
    reports = parse_report(dsn_samples.two_recipients(SENT_ID, TO, "somebody@example.net"))

    assert reports == [
        BounceReport(ID, TO, "failed", "5.1.1", "550 5.1.1 User unknown", "mail.acme.example.com", True),
        BounceReport(
            ID,
            "somebody@example.net",
            "delivered",
            "2.0.0",
            "250 2.0.0 Ok: queued as 4QbTp0",
            "mail.acme.example.com",
            False,
        ),
    ]


@pytest.mark.parametrize("builder", dsn_samples.NOT_REPORTS)
def test_mail_that_is_no_delivery_status_notification_gives_nothing(builder):
    assert parse_report(getattr(dsn_samples, builder)(SENT_ID, TO)) == []


def test_read_receipt_with_a_final_recipient_and_the_original_headers_gives_nothing():
    raw = dsn_samples.read_receipt(SENT_ID, TO)

    assert b"Final-Recipient" in raw and SENT_ID.encode() in raw
    assert parse_report(raw) == []


# --- variations real servers produce --------------------------------------------------------------


def report_with(status_text: str, *, returned: str | None = None, content_type: str | None = None) -> bytes:
    """A minimal DSN around a delivery-status body given as text (CRLF added here)."""
    returned = returned if returned is not None else f"Message-ID: {SENT_ID}\r\nSubject: Invoice\r\n"
    content_type = content_type or 'multipart/report; report-type=delivery-status; boundary="b"'
    body = status_text.replace("\n", "\r\n")
    return (
        f"From: MAILER-DAEMON@example.net\r\nContent-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nBounced.\r\n"
        f"--b\r\nContent-Type: message/delivery-status\r\n\r\n{body}\r\n"
        f"--b\r\nContent-Type: text/rfc822-headers\r\n\r\n{returned}\r\n--b--\r\n"
    ).encode()


RECIPIENT_GROUP = "Final-Recipient: rfc822; nobody@example.org\nAction: failed\nStatus: 5.1.1\n"


def test_original_recipient_stands_in_for_a_missing_final_recipient():
    raw = report_with(
        "Reporting-MTA: dns; mx.example.net\n\nOriginal-Recipient: rfc822;<a@example.org>\n"
        "Action: Failed\nStatus: 5.0.0 (permanent failure)\n"
    )

    [report] = parse_report(raw)

    assert (report.recipient, report.action, report.status, report.permanent) == (
        "a@example.org",
        "failed",
        "5.0.0",
        True,
    )
    assert report.diagnostic is None


def test_missing_status_is_taken_from_the_diagnostic_code():
    raw = report_with(
        "Reporting-MTA: dns; mx.example.net\n\nFinal-Recipient: rfc822; a@example.org\nAction: failed\n"
        "Diagnostic-Code: smtp; 550 5.7.1 Message rejected as spam\n"
    )

    [report] = parse_report(raw)

    assert (report.status, report.diagnostic) == ("5.7.1", "550 5.7.1 Message rejected as spam")


def test_long_diagnostic_is_cut_to_500_characters_with_whitespace_collapsed():
    raw = report_with(
        f"Reporting-MTA: dns; x\n\n{RECIPIENT_GROUP}Diagnostic-Code: smtp; 550 {'word  ' * 400}\n"
    )

    [report] = parse_report(raw)

    assert report.diagnostic is not None and len(report.diagnostic) == 500
    assert "  " not in report.diagnostic


def test_report_without_per_message_fields_still_gives_its_recipients():
    [report] = parse_report(report_with(RECIPIENT_GROUP))

    assert (report.recipient, report.reporting_mta) == (TO, None)


def test_report_type_parameter_is_read_in_any_case_and_quoting():
    content_type = 'Multipart/Report; Report-Type="Delivery-Status"; boundary="b"'

    assert (
        len(
            parse_report(
                report_with(f"Reporting-MTA: dns; x\n\n{RECIPIENT_GROUP}", content_type=content_type)
            )
        )
        == 1
    )


def test_base64_encoded_delivery_status_is_decoded():
    text = base64.encodebytes(f"Reporting-MTA: dns; x\r\n\r\n{RECIPIENT_GROUP}".encode()).decode()
    raw = report_with(text).replace(
        b"Content-Type: message/delivery-status\r\n",
        b"Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: base64\r\n",
    )

    [report] = parse_report(raw)

    assert (report.recipient, report.status, report.reporting_mta) == (TO, "5.1.1", "x")


def test_utf8_bytes_in_fields_come_out_as_text():
    raw = report_with(
        f"Reporting-MTA: dns; x\n\n{RECIPIENT_GROUP}Diagnostic-Code: smtp; 550 Adresse ungültig\n"
    )

    [report] = parse_report(raw)

    assert report.diagnostic == "550 Adresse ungültig"


def test_unknown_action_and_group_without_recipient_are_left_out():
    raw = report_with(
        "Reporting-MTA: dns; x\n\n"
        "Final-Recipient: rfc822; a@example.org\nAction: exploded\nStatus: 5.1.1\n\n"
        "Action: failed\nStatus: 5.1.1\n\n"
        f"{RECIPIENT_GROUP}"
    )

    assert [r.recipient for r in parse_report(raw)] == [TO]


def test_report_without_the_original_message_id_gives_nothing():
    raw = report_with(f"Reporting-MTA: dns; x\n\n{RECIPIENT_GROUP}", returned="Subject: no id here\r\n")

    assert parse_report(raw) == []


def test_report_without_a_delivery_status_part_gives_nothing():
    raw = report_with(RECIPIENT_GROUP).replace(b"message/delivery-status", b"text/plain")

    assert parse_report(raw) == []


# --- malformed and hostile input never raises -------------------------------------------------------


def test_delivery_status_without_recipient_groups_gives_nothing():
    assert parse_report(report_with("Reporting-MTA: dns; mx.example.net\nArrival-Date: today\n")) == []


def test_ten_thousand_recipient_groups_are_capped_quickly():
    groups = "\n".join(
        f"Final-Recipient: rfc822; r{i}@example.org\nAction: failed\nStatus: 5.1.1\n" for i in range(10_000)
    )
    raw = report_with(f"Reporting-MTA: dns; x\n\n{groups}")

    started = time.monotonic()
    reports = parse_report(raw)

    assert len(reports) == MAX_RECIPIENTS
    assert reports[0].recipient == "r0@example.org" and reports[-1].recipient == "r99@example.org"
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("cut", [0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_truncated_reports_never_raise(cut):
    raw = dsn_samples.gmail_bounce(SENT_ID, TO)

    reports = parse_report(raw[: int(len(raw) * cut)])

    assert all(r.message_id == ID for r in reports)


def test_a_report_cut_after_the_original_headers_is_still_read():
    raw = dsn_samples.gmail_bounce(SENT_ID, TO)
    cut = raw.index(b"UGxlYXNl")  # inside the returned message's body

    assert [r.recipient for r in parse_report(raw[:cut])] == [TO]


def test_random_bytes_never_raise():
    rng = random.Random(3464)
    for _ in range(300):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000)))
        assert parse_report(junk) == []


def test_random_damage_to_a_real_report_never_raises():
    rng = random.Random(6522)
    raw = bytearray(dsn_samples.postfix_bounce(SENT_ID, TO))
    for _ in range(300):
        damaged = bytearray(raw)
        for _ in range(rng.randrange(1, 40)):
            damaged[rng.randrange(len(damaged))] = rng.choice(b"\r\n:;<>-= \x00\xff")
        for report in parse_report(bytes(damaged)):
            assert isinstance(report, BounceReport)


def test_deeply_nested_multiparts_never_raise():
    message: Message = Message()
    message["Content-Type"] = 'multipart/report; report-type=delivery-status; boundary="b0"'
    body = "".join(
        f'--b{i}\r\nContent-Type: multipart/mixed; boundary="b{i + 1}"\r\n\r\n' for i in range(3000)
    )
    raw = message.as_bytes() + body.encode()

    assert parse_report(raw) == []


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\r\n\r\n",
        b"Content-Type: multipart/report; report-type=delivery-status\r\n\r\nno boundary",
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n--b--',
        b"Content-Type: message/delivery-status\r\n\r\nFinal-Recipient: rfc822; a@b\r\nAction: failed\r\n",
        b"Content-Type: multipart/report; report-type*=''delivery-status; boundary=b\r\n\r\n--b\r\n",
    ],
)
def test_degenerate_messages_give_nothing(raw):
    assert parse_report(raw) == []
