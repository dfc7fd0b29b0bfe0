"""The attachment and size_limit checks of a test send: plain values in, the answer's check out."""

from __future__ import annotations

import pytest

from mailer.delivery.message import Attachment, Sender, build_message
from mailer.settings.checks import HEADROOM_BYTES, attachment_check, encoded_size, size_limit_check

MIB = 1024 * 1024
LIMIT = 20 * MIB  # the stack's default ATTACHMENT_MAX_BYTES
# 20 MiB in base64: 4 * ceil(20971520 / 3) = 27,962,028 characters, in 367,922 lines of 76 with CRLF
# (735,844 bytes), plus 64 KiB for headers and body.
NEEDED = 27_962_028 + 735_844 + 65_536


def test_needed_size_is_the_limit_in_base64_lines_plus_headroom():
    assert encoded_size(LIMIT) + HEADROOM_BYTES == NEEDED


@pytest.mark.parametrize("size", [0, 1, 2, 3, 56, 57, 58, 51_200, 1_234_567])
def test_encoded_size_is_what_the_message_builder_writes_for_an_attachment(size):
    message = build_message(
        sender=Sender("billing@example.com"),
        to=["customer@example.com"],
        subject="Invoice",
        text="Please find the invoice attached.",
        attachments=[Attachment("invoice.pdf", b"%PDF" * (size // 4) + b"x" * (size % 4))],
    )
    part = next(message.message.iter_attachments())
    body = part.as_bytes(policy=message.message.policy).split(b"\r\n\r\n", 1)[1]

    assert len(body) == encoded_size(size)


def test_headroom_covers_the_headers_and_body_of_a_real_message():
    # Given a message carrying attachments as large as a 1 MiB limit allows
    limit = MIB
    message = build_message(
        sender=Sender("billing@example.com", "Example Plumbing Ltd"),
        to=["customer@example.com"],
        cc=["accounts@example.com"],
        subject="Invoice 2024-0117 for the work on 12 March",
        text="Dear customer,\n\nplease find the invoice attached.\n" * 20,
        html="<p>Dear customer,</p><p>please find the invoice attached.</p>" * 20,
        attachments=[
            Attachment("invoice.pdf", b"\x00" * (limit // 2)),
            Attachment("a.pdf", b"\x01" * (limit // 2)),
        ],
    )

    # Then a server that takes the needed size takes the message
    assert len(message.as_bytes()) <= encoded_size(limit) + HEADROOM_BYTES
    assert size_limit_check(len(message.as_bytes()) + 1, limit // 2).status == "pass"


def test_server_size_exactly_the_needed_size_passes():
    check = size_limit_check(NEEDED, LIMIT)

    assert check.status == "pass"
    assert check.name == "size_limit"


def test_server_size_one_byte_below_the_needed_size_warns_naming_both_sizes():
    check = size_limit_check(NEEDED - 1, LIMIT)

    assert check.status == "warn"
    assert check.detail == (
        "The server takes messages up to 27.4 MB, but with attachments up to 20 MB a message can be "
        "27.4 MB once encoded."
    )
    assert check.hint


def test_a_10_mb_server_warns_and_says_how_large_attachments_may_be():
    check = size_limit_check(10 * MIB, LIMIT)

    assert check.status == "warn"
    assert "The server takes messages up to 10 MB" in check.detail
    assert "27.4 MB" in check.detail
    assert "Keep the attachments of one email below 7.2 MB" in check.hint
    largest = int(7.2 * MIB)
    assert encoded_size(largest) + HEADROOM_BYTES <= 10 * MIB


@pytest.mark.parametrize("server_size", [35_882_577, 157_286_400])  # Gmail's and Microsoft 365's SIZE
def test_server_size_above_the_needed_size_passes(server_size):
    check = size_limit_check(server_size, LIMIT)

    assert check.status == "pass"
    assert "27.4 MB" in check.detail


def test_size_zero_means_no_limit_and_passes():
    check = size_limit_check(0, LIMIT)

    assert check.status == "pass"
    assert "no fixed message size limit" in check.detail


def test_no_size_advertised_is_skipped():
    check = size_limit_check(None, LIMIT)

    assert check.status == "skipped"
    assert "no SIZE advertised" in check.detail


def test_attachment_accepted_passes():
    check = attachment_check(True, 51_200)

    assert check.as_dict() == {
        "name": "attachment",
        "status": "pass",
        "detail": "The server accepted the test message with a 50 KB PDF attached.",
        "hint": "",
    }


def test_attachment_refused_at_the_data_stage_fails_with_a_hint():
    check = attachment_check(False, 51_200)

    assert check.status == "fail"
    assert "refused the test message with a 50 KB PDF" in check.detail
    assert "attachments" in check.hint


def test_attachment_not_tested_when_the_send_stopped_before_the_data_stage():
    assert attachment_check(None, 51_200).status == "skipped"
