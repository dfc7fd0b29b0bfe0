"""SmtpTransport with PIPELINING (RFC 2920) and CHUNKING (RFC 3030) against a real loopback server.

tests.support.smtp_extended.ExtendedSmtpServer (aiosmtpd with BDAT, STARTTLS and AUTH) records which
commands arrived in the same read, so the grouping on the wire is asserted, not assumed. Every
refusal is compared with what the step-by-step path (`pipelining=False`) reports against the same
server, whole Failure against whole Failure.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest

from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.guard import AddressGuard
from mailer.delivery.message import OutgoingMessage, Sender, build_message
from mailer.delivery.transports.base import Delivery
from mailer.delivery.transports.smtp import SmtpServer, SmtpTransport
from tests.support.leaks import settle
from tests.support.smtp import ScriptedServer, Servers
from tests.support.smtp_extended import ExtendedSmtpServer, RefusingHandler

USER = "billing@acme.example"
PASSWORD = "Corr3ct-Horse-Battery"
ALICE, BOB = "alice@customer.example", "bob@customr.example"
SIGN_IN = [["EHLO"], ["STARTTLS"], ["EHLO"], ["AUTH"]]

# What each server offers: (PIPELINING, CHUNKING)
BOTH, PIPELINING_ONLY, NEITHER = (True, True), (True, False), (False, False)
OFFERING_PIPELINING = pytest.mark.parametrize(
    "offers", [BOTH, PIPELINING_ONLY], ids=["pipelining+chunking", "pipelining-only"]
)


def message(*to: str, sender: str = USER, **options: Any) -> OutgoingMessage:
    options.setdefault("subject", "Invoice 1042")
    options.setdefault("text", "Please find invoice 1042 attached.")
    return build_message(sender=Sender(sender, "Acme Plumbing & Heating"), to=list(to or [ALICE]), **options)


StartServer = Callable[..., ExtendedSmtpServer]
MakeTransport = Callable[..., SmtpTransport]


@pytest.fixture
def extended_server(server_tls: Any) -> Iterator[StartServer]:
    """STARTTLS + AUTH servers offering what `offers` says; every one started is stopped afterwards."""
    servers = Servers()

    def start(offers: tuple[bool, bool] = BOTH, **options: Any) -> ExtendedSmtpServer:
        pipelining, chunking = offers
        server = ExtendedSmtpServer(
            server_context=server_tls,
            users={USER: PASSWORD},
            pipelining=pipelining,
            chunking=chunking,
            **options,
        )
        return servers.keep(server.start())

    yield start
    servers.stop_all()


@pytest.fixture
def transport(ca_bundle: Path) -> MakeTransport:
    def make(server: ExtendedSmtpServer, *, pipelining: bool = True, timeout: float = 2.0) -> SmtpTransport:
        return SmtpTransport(
            SmtpServer("127.0.0.1", server.port, "starttls", USER),
            PASSWORD,
            timeout=timeout,
            extra_ca_bundle=str(ca_bundle),
            from_email=USER,
            guard=AddressGuard.allowing("127.0.0.1/32", "::1/128"),
            pipelining=pipelining,
        )

    return make


def groups(server: ExtendedSmtpServer) -> list[list[str]]:
    """The command groups of the server's only session, once its QUIT has arrived."""
    settle(lambda: server.wire.verbs().count("QUIT"), 1, seconds=2.0)
    [session] = server.wire.sessions
    return session.groups()


def failure_of(make: Callable[[], SmtpTransport], outgoing: OutgoingMessage) -> Failure:
    with pytest.raises(DeliveryFailed) as info, make() as smtp:
        smtp.send(outgoing)
    return info.value.failure


def without_port(failure: Failure, server: ExtendedSmtpServer) -> Failure:
    return replace(failure, hint=failure.hint.replace(f":{server.port}", ":<port>"))


# --- grouping on the wire ----------------------------------------------------------------------------


def test_pipelining_with_chunking_sends_envelope_and_message_in_one_read(extended_server, transport):
    server = extended_server(BOTH)

    with transport(server) as smtp:
        smtp.send(message(ALICE, BOB))
        smtp.send(message(ALICE))

    assert groups(server) == [
        *SIGN_IN,
        ["MAIL", "RCPT", "RCPT", "BDAT"],
        ["MAIL", "RCPT", "BDAT"],
        ["QUIT"],
    ]
    assert [m.rcpt_tos for m in server.messages] == [(ALICE, BOB), (ALICE,)]


def test_pipelining_without_chunking_sends_envelope_and_data_together_then_the_content(
    extended_server, transport
):
    server = extended_server(PIPELINING_ONLY)

    with transport(server) as smtp:
        smtp.send(message(ALICE, BOB))

    assert groups(server) == [*SIGN_IN, ["MAIL", "RCPT", "RCPT", "DATA"], ["QUIT"]]
    [session] = server.wire.sessions
    envelope = next(n for n, read in enumerate(session.reads) if read.startswith(b"mail from:"))
    assert session.reads[envelope].endswith(b"data\r\n")
    assert session.reads[envelope + 1].endswith(b"\r\n.\r\n")  # the content, after the 354
    assert len(server.messages) == 1


@pytest.mark.parametrize(
    ("offers", "pipelining"),
    [(NEITHER, True), (BOTH, False), (PIPELINING_ONLY, False)],
    ids=["server-offers-neither", "both-offered-pipelining-off", "pipelining-offered-pipelining-off"],
)
def test_one_command_at_a_time_unless_pipelining_is_offered_and_on(
    extended_server, transport, offers, pipelining
):
    server = extended_server(offers)

    with transport(server, pipelining=pipelining) as smtp:
        smtp.send(message(ALICE, BOB))

    assert groups(server) == [*SIGN_IN, ["MAIL"], ["RCPT"], ["RCPT"], ["DATA"], ["QUIT"]]
    assert len(server.messages) == 1


def test_quit_is_sent_but_its_reply_not_waited_for(extended_server, transport):
    server = extended_server(BOTH, handler=RefusingHandler(quit_delay=1.0))
    smtp = transport(server)
    smtp.open()
    smtp.send(message())

    started = time.monotonic()
    smtp.close()
    closing = time.monotonic() - started

    assert closing < 0.5
    assert settle(lambda: server.wire.verbs().count("QUIT"), 1, seconds=2.0) == 1


def test_quit_reply_is_waited_for_with_pipelining_off(extended_server, transport):
    server = extended_server(BOTH, handler=RefusingHandler(quit_delay=0.5))
    smtp = transport(server, pipelining=False)
    smtp.open()
    smtp.send(message())

    started = time.monotonic()
    smtp.close()

    assert time.monotonic() - started >= 0.5
    assert server.wire.verbs().count("QUIT") == 1


# --- the message as delivered ------------------------------------------------------------------------

DOTTED_TEXT = "Totals below.\n.50 off for paying this week\n..\n.\nThank you."


def test_delivered_bytes_are_the_same_on_every_path(extended_server, transport):
    outgoing = message(ALICE, text=DOTTED_TEXT, html="<p>Totals below.</p>\n.<b>50</b> off")
    received = {}
    for name, offers, pipelining in [
        ("bdat", BOTH, True),
        ("pipelined data", PIPELINING_ONLY, True),
        ("one at a time", NEITHER, False),
    ]:
        server = extended_server(offers)
        with transport(server, pipelining=pipelining) as smtp:
            smtp.send(outgoing)
        [received[name]] = [m.data for m in server.messages]

    assert received["bdat"] == received["pipelined data"] == received["one at a time"]
    sent = message_from_bytes(outgoing.as_bytes(), policy=policy.default)
    for data in received.values():
        got = message_from_bytes(data, policy=policy.default)
        assert got.items() == sent.items()
        assert got.get_body(("plain",)).get_content() == sent.get_body(("plain",)).get_content()
        assert got.get_body(("html",)).get_content() == sent.get_body(("html",)).get_content()


def test_bdat_carries_lines_starting_with_a_dot_unstuffed(extended_server, transport):
    server = extended_server(BOTH)

    with transport(server) as smtp:
        smtp.send(message(ALICE, text=DOTTED_TEXT))

    wire = b"".join(server.wire.sessions[0].reads)
    assert b"\r\n.50 off for paying this week\r\n..\r\n.\r\nThank you." in wire
    assert b"\r\n..50 off" not in wire
    [received] = server.messages
    assert b"\r\n.50 off for paying this week\r\n..\r\n.\r\nThank you." in received.data


# --- refusals ----------------------------------------------------------------------------------------


@OFFERING_PIPELINING
def test_one_recipient_refused_still_delivers_and_lists_it(extended_server, transport, offers):
    server = extended_server(offers, handler=RefusingHandler(refused_recipients={BOB}))

    with transport(server) as smtp:
        delivery = smtp.send(message(ALICE, BOB))

    assert list(delivery.refused) == [BOB]
    assert delivery.refused[BOB].startswith("550 5.1.1")
    [received] = server.messages
    assert received.rcpt_tos == (ALICE,)
    assert groups(server)[len(SIGN_IN)][:3] == ["MAIL", "RCPT", "RCPT"]


# Each refusal: the server's options (a fresh handler for every server), the message, and the
# failure's stage and category.
REFUSALS: dict[str, tuple[Callable[[], dict[str, Any]], Callable[[], OutgoingMessage], tuple[str, str]]] = {
    "every recipient refused": (
        lambda: {"handler": RefusingHandler(refused_recipients={ALICE, BOB})},
        lambda: message(ALICE, BOB),
        ("envelope", "recipient_rejected"),
    ),
    "sender refused": (
        lambda: {"handler": RefusingHandler(refused_senders={USER})},
        lambda: message(ALICE, BOB),
        ("envelope", "sender_rejected"),
    ),
    "content refused": (
        lambda: {"handler": RefusingHandler(refused_content=b"Invoice 1042")},
        lambda: message(ALICE),
        ("data", "message_rejected"),
    ),
    "452 to every recipient": (
        lambda: {"handler": RefusingHandler(busy_recipients={ALICE})},
        lambda: message(ALICE),
        ("envelope", "throttled"),
    ),
    "over the size limit": (
        lambda: {"data_size_limit": 2_000},
        lambda: message(ALICE, text="Line of the invoice.\n" * 500),
        ("envelope", "message_too_large"),
    ),
    "connection dropped at MAIL": (
        lambda: {"handler": RefusingHandler(drop_on_mail=1)},
        lambda: message(ALICE),
        ("envelope", "connection_lost"),
    ),
    "content answered after the timeout": (
        lambda: {"handler": RefusingHandler(content_delay=1.5, refused_content=b"")},
        lambda: message(ALICE),
        ("data", "timeout"),
    ),
}


@OFFERING_PIPELINING
@pytest.mark.parametrize("refusal", list(REFUSALS))
def test_refusal_is_reported_as_the_step_by_step_path_reports_it(extended_server, transport, offers, refusal):
    server_options, outgoing, (stage, category) = REFUSALS[refusal]
    server, twin = extended_server(offers, **server_options()), extended_server(offers, **server_options())

    pipelined = failure_of(lambda: transport(server, timeout=0.5), outgoing())
    step_by_step = failure_of(lambda: transport(twin, pipelining=False, timeout=0.5), outgoing())

    assert (pipelined.stage, pipelined.category) == (stage, category)
    # stage, category, transient, smtp_code, refused, server message and hint (which names the port)
    assert without_port(pipelined, server) == without_port(step_by_step, twin)
    [session], [twin_session] = server.wire.sessions, twin.wire.sessions
    assert b"\r\nrcpt to:" in session.read_with("MAIL")  # it really was pipelined
    assert b"rcpt to:" not in twin_session.read_with("MAIL")
    assert server.messages == twin.messages == []


# --- batches -----------------------------------------------------------------------------------------

OTHER_SENDER = "accounts@acme.example"
MIDDLE_FAILURES: dict[str, tuple[Callable[[], RefusingHandler], str]] = {
    "sender refused": (lambda: RefusingHandler(refused_senders={OTHER_SENDER}), "sender_rejected"),
    "recipient refused": (
        lambda: RefusingHandler(refused_recipients={"customer2@customer.example"}),
        "recipient_rejected",
    ),
    "content refused": (lambda: RefusingHandler(refused_content=b"Invoice 2"), "message_rejected"),
}


@OFFERING_PIPELINING
@pytest.mark.parametrize("failure", list(MIDDLE_FAILURES))
def test_batch_goes_on_over_the_same_connection_after_a_refusal_in_the_middle(
    extended_server, transport, offers, failure
):
    make_handler, category = MIDDLE_FAILURES[failure]
    handler = make_handler()
    server = extended_server(offers, handler=handler)
    batch = [
        message("customer1@customer.example", subject="Invoice 1"),
        message("customer2@customer.example", subject="Invoice 2", sender=OTHER_SENDER),
        message("customer3@customer.example", subject="Invoice 3"),
    ]

    with transport(server) as smtp:
        first, second, third = smtp.send_messages(batch)

    assert isinstance(first, Delivery) and isinstance(third, Delivery)
    assert isinstance(second, Failure) and second.category == category
    assert [m.parsed()["Subject"] for m in server.messages] == ["Invoice 1", "Invoice 3"]
    assert len(handler.peers) == 1 and len(server.wire.sessions) == 1
    after_sign_in = groups(server)[len(SIGN_IN) :]
    assert after_sign_in[1][0] == "MAIL" and after_sign_in[2] == ["RSET"]
    assert after_sign_in[3][0] == "MAIL"


# --- replies aiosmtpd never gives: a scripted server -------------------------------------------------


def answering(replies: dict[str, str], lines: list[bytes]) -> Callable[[socket.socket], None]:
    """A plain-text server offering PIPELINING that answers each command line by its verb
    (`replies`, "250 OK" for any other), hangs up after a 421, and keeps every line it read (after
    a 421, what had arrived by then too)."""

    def script(conn: socket.socket) -> None:
        received = conn.makefile("rb")
        conn.sendall(b"220 mx.scripted.example ESMTP\r\n")
        in_data = False
        for line in iter(received.readline, b""):
            lines.append(line)
            if in_data:
                in_data = line != b".\r\n"
                if not in_data:
                    conn.sendall(replies.get("content", "250 OK").encode() + b"\r\n")
                continue
            verb = line.split(b" ", 1)[0].strip().upper().decode()
            if verb == "EHLO":
                conn.sendall(b"250-mx.scripted.example\r\n250-PIPELINING\r\n250 SIZE 1000000\r\n")
                continue
            reply = replies.get(verb, "221 Bye" if verb == "QUIT" else "250 OK")
            conn.sendall(reply.encode() + b"\r\n")
            in_data = reply.startswith("354")
            if reply.startswith("421"):  # what else the client had sent before it read the 421
                conn.settimeout(0.2)
                with contextlib.suppress(OSError):
                    lines.extend(iter(received.readline, b""))
                return
            if verb == "QUIT":
                return

    return script


@pytest.fixture
def scripted() -> Iterator[Callable[..., tuple[ScriptedServer, list[bytes]]]]:
    servers = Servers()

    def start(replies: dict[str, str]) -> tuple[ScriptedServer, list[bytes]]:
        lines: list[bytes] = []
        return servers.keep(ScriptedServer(answering(replies, lines)).start()), lines

    yield start
    servers.stop_all()


def plain_transport(server: ScriptedServer, *, pipelining: bool = True) -> SmtpTransport:
    return SmtpTransport(
        SmtpServer("127.0.0.1", server.port, "none"),
        None,
        timeout=2.0,
        guard=AddressGuard.allowing("127.0.0.1/32"),
        pipelining=pipelining,
    )


def test_421_to_mail_in_a_pipelined_group_is_reported_as_step_by_step_and_ends_the_batch(scripted):
    replies = {"MAIL": "421 4.7.0 Too many connections, try again later"}
    (server, lines), (twin, _) = scripted(replies), scripted(replies)

    with plain_transport(server) as smtp:
        pipelined = smtp.send_messages([message(ALICE), message(BOB)])
    with plain_transport(twin, pipelining=False) as smtp:
        step_by_step = smtp.send_messages([message(ALICE), message(BOB)])

    first, second = pipelined
    assert isinstance(first, Failure) and (first.stage, first.category, first.smtp_code) == (
        "envelope",
        "throttled",
        421,
    )
    assert isinstance(second, Failure) and second.category == "connection_lost"
    assert [without_port(f, server) for f in pipelined] == [without_port(f, twin) for f in step_by_step]
    assert [line.split(b" ")[0] for line in lines[1:]] == [b"mail", b"rcpt", b"data\r\n"]


def test_354_to_data_after_every_recipient_refused_is_ended_and_reset(scripted):
    server, lines = scripted({"RCPT": "550 5.1.1 User unknown", "DATA": "354 Go ahead"})

    with plain_transport(server) as smtp:
        outcome, *_ = smtp.send_messages([message(ALICE)])

    assert isinstance(outcome, Failure) and outcome.category == "recipient_rejected"
    assert lines[3:6] == [b"data\r\n", b".\r\n", b"rset\r\n"]  # after EHLO, MAIL, RCPT
