"""SmtpTransport against real servers on 127.0.0.1: every failure category, produced by a server.

aiosmtpd (local.smtp_server, with tests.support.smtp.ScriptedHandler) plays the well-behaved and the
refusing servers; raw sockets (tests.support.smtp) play the ones that stall or hang up below SMTP.
Nothing here mocks smtplib.
"""

from __future__ import annotations

import gc
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from local.smtp_server import LocalSmtpServer, free_port
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.guard import AddressGuard
from mailer.delivery.message import OutgoingMessage, Sender, build_message
from mailer.delivery.transports.base import Delivery
from mailer.delivery.transports.smtp import SmtpServer, SmtpTransport
from tests.support.leaks import settle, socket_inodes
from tests.support.smtp import ScriptedHandler, SilentListener, banner
from tests.support.tls import server_context

USER = "billing@acme.example"
PASSWORD = "Corr3ct-Horse-Battery"
SENDER = Sender(USER, "Acme Plumbing & Heating")


# --- helpers ---------------------------------------------------------------------------------------


def message(*to: str, **options: Any) -> OutgoingMessage:
    options.setdefault("subject", "Invoice 1042")
    options.setdefault("text", "Please find invoice 1042 attached.")
    return build_message(sender=SENDER, to=list(to or ["alice@customer.example"]), **options)


def failure_of(transport: SmtpTransport, outgoing: OutgoingMessage | None = None) -> Failure:
    with pytest.raises(DeliveryFailed) as info, transport:
        transport.send(outgoing or message())
    return info.value.failure


MakeTransport = Callable[..., SmtpTransport]


@pytest.fixture
def transport(ca_bundle: Path) -> MakeTransport:
    def make(
        port: int,
        security: str,
        username: str | None = None,
        password: str | None = None,
        *,
        host: str = "127.0.0.1",
        timeout: float = 2.0,
    ) -> SmtpTransport:
        return SmtpTransport(
            SmtpServer(host, port, security, username),
            password,
            timeout=timeout,
            extra_ca_bundle=str(ca_bundle),
            from_email=USER,
            guard=AddressGuard.allowing("127.0.0.1/32", "::1/128"),
        )

    return make


@pytest.fixture
def silent_listener() -> Iterator[SilentListener]:
    with SilentListener() as listener:
        yield listener


@pytest.fixture
def untrusted_tls() -> ssl.SSLContext:
    """A server certificate for 127.0.0.1 from a CA the client has never heard of."""
    return server_context(trustme.CA(), "localhost", "127.0.0.1")


@pytest.fixture
def wrong_name_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A certificate from the trusted CA, but for another server name than the one dialled."""
    return server_context(ca, "mail.elsewhere.example")


# --- success ---------------------------------------------------------------------------------------


def test_plain_server_without_auth_receives_the_message_as_built(smtp_server, transport):
    server = smtp_server("plain")
    outgoing = message("alice@customer.example", cc=["bob@customer.example"])

    with transport(server.port, "none") as smtp:
        delivery = smtp.send(outgoing)

    [received] = server.messages
    assert received.mail_from == USER
    assert received.rcpt_tos == ("alice@customer.example", "bob@customer.example")
    headers = received.parsed()
    assert headers["From"] == "Acme Plumbing & Heating <billing@acme.example>"
    assert headers["To"] == "alice@customer.example" and headers["Cc"] == "bob@customer.example"
    assert headers["Subject"] == "Invoice 1042"
    assert headers["Message-ID"] == delivery.message_id and delivery.refused == {}
    assert not received.tls and received.auth_user is None


def test_starttls_with_auth_delivers_over_tls_as_the_signed_in_user(smtp_server, transport):
    server = smtp_server("starttls", users={USER: PASSWORD})

    with transport(server.port, "starttls", USER, PASSWORD) as smtp:
        delivery = smtp.send(message())

    [received] = server.messages
    assert received.parsed()["Message-ID"] == delivery.message_id
    assert received.rcpt_tos == ("alice@customer.example",)
    assert received.tls
    assert received.auth_user == USER


def test_implicit_tls_with_auth_delivers_over_tls_as_the_signed_in_user(smtp_server, transport):
    server = smtp_server("ssl", users={USER: PASSWORD})

    with transport(server.port, "ssl", USER, PASSWORD) as smtp:
        delivery = smtp.send(message())

    [received] = server.messages
    assert received.parsed()["Message-ID"] == delivery.message_id
    assert received.tls
    assert received.auth_user == USER


def test_opportunistic_uses_starttls_when_offered(smtp_server, transport):
    server = smtp_server("starttls")

    with transport(server.port, "opportunistic") as smtp:
        smtp.send(message())

    [received] = server.messages
    assert received.tls


def test_opportunistic_without_username_sends_in_plain_when_starttls_is_not_offered(smtp_server, transport):
    server = smtp_server("plain")

    with transport(server.port, "opportunistic") as smtp:
        smtp.send(message())

    [received] = server.messages
    assert not received.tls and received.rcpt_tos == ("alice@customer.example",)


def test_bcc_recipient_is_in_the_envelope_but_not_in_the_headers(smtp_server, transport):
    server = smtp_server("starttls", users={USER: PASSWORD})

    with transport(server.port, "starttls", USER, PASSWORD) as smtp:
        smtp.send(message("alice@customer.example", bcc=["archive@acme.example"]))

    [received] = server.messages
    assert received.rcpt_tos == ("alice@customer.example", "archive@acme.example")
    assert "Bcc" not in received.parsed()
    assert b"archive@acme.example" not in received.data


# --- connect ---------------------------------------------------------------------------------------


def test_closed_port_is_connection_refused(transport):
    failure = failure_of(transport(free_port(), "starttls"))

    assert (failure.category, failure.stage, failure.transient) == ("connection_refused", "connect", True)
    assert failure.smtp_code is None
    assert "port" in failure.hint


def test_server_that_never_sends_a_banner_is_timeout_at_connect(silent_listener, transport):
    started = time.monotonic()
    failure = failure_of(transport(silent_listener.port, "starttls", timeout=1.0))

    assert time.monotonic() - started < 2.5
    assert (failure.category, failure.stage, failure.transient) == ("timeout", "connect", True)
    assert "answering" in failure.hint


def test_plain_client_to_implicit_tls_port_is_timeout_at_connect(smtp_server, transport):
    """The TLS server waits for a ClientHello, the client for a banner: both stall."""
    server = smtp_server("ssl")

    failure = failure_of(transport(server.port, "starttls", timeout=1.0))

    assert (failure.category, failure.stage, failure.transient) == ("timeout", "connect", True)
    assert server.messages == []


def test_421_greeting_is_throttled_at_connect(scripted_server, transport):
    server = scripted_server(banner("421 4.7.0 Too many connections from your IP, try again later"))

    failure = failure_of(transport(server.port, "starttls"))

    assert (failure.category, failure.stage, failure.transient) == ("throttled", "connect", True)
    assert failure.smtp_code == 421
    assert "later" in failure.hint


# --- tls -------------------------------------------------------------------------------------------


def test_ssl_against_a_starttls_port_is_tls_handshake_with_starttls_hint(smtp_server, transport):
    """The server greets in plain text; the client expected a TLS handshake."""
    server = smtp_server("starttls", users={USER: PASSWORD})

    failure = failure_of(transport(server.port, "ssl", USER, PASSWORD))

    assert (failure.category, failure.stage, failure.transient) == ("tls_handshake", "tls", False)
    assert "starttls" in failure.hint
    assert server.messages == []


def test_ssl_against_a_plain_server_is_tls_handshake(smtp_server, transport):
    server = smtp_server("plain")

    failure = failure_of(transport(server.port, "ssl"))

    assert (failure.category, failure.stage, failure.transient) == ("tls_handshake", "tls", False)
    assert server.messages == []


def test_certificate_from_an_untrusted_ca_is_certificate(smtp_server, transport, untrusted_tls):
    server = smtp_server("starttls", server_context=untrusted_tls, users={USER: PASSWORD})

    failure = failure_of(transport(server.port, "starttls", USER, PASSWORD))

    assert (failure.category, failure.stage, failure.transient) == ("certificate", "tls", False)
    assert "certificate" in (failure.server_message or "")
    assert "MAILER_EXTRA_CA_BUNDLE" in failure.hint


def test_host_name_not_on_the_certificate_is_certificate(smtp_server, transport, wrong_name_tls):
    server = smtp_server("ssl", server_context=wrong_name_tls)

    failure = failure_of(transport(server.port, "ssl"))

    assert (failure.category, failure.stage, failure.transient) == ("certificate", "tls", False)
    assert "mismatch" in (failure.server_message or "")
    assert "server name" in failure.hint


def test_starttls_required_but_not_offered_is_starttls_unavailable(smtp_server, transport):
    server = smtp_server("plain")

    failure = failure_of(transport(server.port, "starttls"))

    assert (failure.category, failure.stage, failure.transient) == ("starttls_unavailable", "tls", False)
    assert "587" in failure.hint
    assert server.messages == []


def test_opportunistic_with_username_never_sends_the_password_without_tls(smtp_server, transport):
    handler = ScriptedHandler()
    server = smtp_server("plain", users={USER: PASSWORD}, handler=handler)  # offers AUTH in clear text

    failure = failure_of(transport(server.port, "opportunistic", USER, PASSWORD))

    assert (failure.category, failure.stage) == ("starttls_unavailable", "tls")
    assert "not sent" in failure.hint
    assert handler.auth_commands == []
    assert server.messages == []


# --- auth ------------------------------------------------------------------------------------------


def test_wrong_password_is_auth_failed_with_app_password_hint(smtp_server, transport):
    server = smtp_server("starttls", users={USER: PASSWORD})

    failure = failure_of(transport(server.port, "starttls", USER, "my-normal-password"))

    assert (failure.category, failure.stage, failure.transient) == ("auth_failed", "auth", False)
    assert failure.smtp_code == 535
    assert "app password" in failure.hint
    assert server.messages == []


def test_security_none_with_username_is_insecure_auth_refused_and_sends_no_auth(smtp_server, transport):
    handler = ScriptedHandler()
    server = smtp_server("plain", users={USER: PASSWORD}, handler=handler)

    failure = failure_of(transport(server.port, "none", USER, PASSWORD))

    assert (failure.category, failure.stage, failure.transient) == ("insecure_auth_refused", "auth", False)
    assert "not sent" in failure.hint
    assert handler.auth_commands == []


def test_server_offering_no_auth_is_auth_unsupported(smtp_server, transport):
    server = smtp_server("starttls", handler=ScriptedHandler(offer_auth=False))

    failure = failure_of(transport(server.port, "starttls", USER, PASSWORD))

    assert (failure.category, failure.stage, failure.transient) == ("auth_unsupported", "auth", False)
    assert "username" in failure.hint
    assert server.messages == []


# --- envelope and data -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reply",
    [
        "553 5.7.1 <billing@acme.example>: Sender address rejected: not owned by user",
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
    ],
)
def test_refused_sender_is_sender_rejected_with_send_as_hint(smtp_server, transport, reply):
    server = smtp_server("starttls", users={USER: PASSWORD}, handler=ScriptedHandler(mail_reply=reply))

    failure = failure_of(transport(server.port, "starttls", USER, PASSWORD))

    assert (failure.category, failure.stage, failure.transient) == ("sender_rejected", "envelope", False)
    assert failure.smtp_code == int(reply[:3])
    assert "Send As" in failure.hint and USER in failure.hint
    assert server.messages == []


def test_every_recipient_refused_is_recipient_rejected_naming_them(smtp_server, transport):
    handler = ScriptedHandler(rcpt_reply=lambda address: "550 5.1.1 User unknown")
    server = smtp_server("starttls", users={USER: PASSWORD}, handler=handler)
    outgoing = message("alice@customer.example", "bob@customr.example")

    failure = failure_of(transport(server.port, "starttls", USER, PASSWORD), outgoing)

    assert (failure.category, failure.stage, failure.transient) == ("recipient_rejected", "envelope", False)
    assert failure.smtp_code == 550
    assert set(failure.refused) == {"alice@customer.example", "bob@customr.example"}
    assert "bob@customr.example" in failure.hint and "typos" in failure.hint
    assert server.messages == []


def test_one_of_two_recipients_refused_still_delivers_and_lists_the_refused_one(smtp_server, transport):
    def refuse_bob(address: str) -> str | None:
        return "550 5.1.1 <bob@customr.example>: Recipient address rejected" if "bob" in address else None

    server = smtp_server("starttls", users={USER: PASSWORD}, handler=ScriptedHandler(rcpt_reply=refuse_bob))

    with transport(server.port, "starttls", USER, PASSWORD) as smtp:
        delivery = smtp.send(message("alice@customer.example", "bob@customr.example"))

    assert list(delivery.refused) == ["bob@customr.example"]
    assert delivery.refused["bob@customr.example"].startswith("550 ")
    [received] = server.messages
    assert received.rcpt_tos == ("alice@customer.example",)


def test_message_over_the_size_limit_is_message_too_large(smtp_server, transport):
    server = smtp_server("starttls", users={USER: PASSWORD}, data_size_limit=2_000)

    failure = failure_of(
        transport(server.port, "starttls", USER, PASSWORD), message(text="Line of the invoice.\n" * 500)
    )

    assert failure.category == "message_too_large" and failure.transient is False
    assert failure.smtp_code == 552
    assert failure.stage in ("envelope", "data")  # SIZE= refuses it at MAIL FROM, else after DATA
    assert "attachments" in failure.hint
    assert server.messages == []


def test_451_at_rcpt_is_throttled_and_transient(smtp_server, transport):
    handler = ScriptedHandler(rcpt_reply=lambda address: "451 4.7.1 Too many messages, slow down")
    server = smtp_server("starttls", users={USER: PASSWORD}, handler=handler)

    failure = failure_of(transport(server.port, "starttls", USER, PASSWORD))

    assert (failure.category, failure.stage, failure.transient) == ("throttled", "envelope", True)
    assert failure.smtp_code == 451
    assert "later" in failure.hint


def test_451_at_data_is_throttled_and_transient(smtp_server, transport):
    handler = ScriptedHandler(data_reply="451 4.7.1 Sending rate limit exceeded, try again later")
    server = smtp_server("starttls", users={USER: PASSWORD}, handler=handler)

    failure = failure_of(transport(server.port, "starttls", USER, PASSWORD))

    assert (failure.category, failure.stage, failure.transient) == ("throttled", "data", True)
    assert failure.smtp_code == 451
    assert server.messages == []


def test_connection_dropped_after_mail_from_is_connection_lost_and_transient(smtp_server, transport):
    handler = ScriptedHandler(drop_on_mail=1)
    server = smtp_server("starttls", users={USER: PASSWORD}, handler=handler)

    failure = failure_of(transport(server.port, "starttls", USER, PASSWORD))

    assert failure.category == "connection_lost" and failure.transient is True
    assert "retried" in failure.hint
    assert handler.mail_commands == 1 and server.messages == []


def test_connection_dropped_after_mail_from_reports_stage_envelope(smtp_server, transport):
    server = smtp_server("starttls", users={USER: PASSWORD}, handler=ScriptedHandler(drop_on_mail=1))

    failure = failure_of(transport(server.port, "starttls", USER, PASSWORD))

    assert failure.category == "connection_lost"
    assert failure.stage == "envelope"


# --- batches ---------------------------------------------------------------------------------------


def test_batch_of_three_is_sent_over_one_connection(smtp_server, transport):
    handler = ScriptedHandler()
    server = smtp_server("starttls", users={USER: PASSWORD}, handler=handler)
    batch = [message(f"customer{n}@customer.example", subject=f"Invoice {n}") for n in (1, 2, 3)]

    with transport(server.port, "starttls", USER, PASSWORD) as smtp:
        outcomes = smtp.send_messages(batch)

    assert all(isinstance(outcome, Delivery) for outcome in outcomes)
    assert [m.parsed()["Subject"] for m in server.messages] == ["Invoice 1", "Invoice 2", "Invoice 3"]
    assert len(handler.peers) == 1
    assert len(handler.auth_commands) == 1


def test_batch_delivers_the_others_when_one_recipient_is_refused_in_the_middle(smtp_server, transport):
    def refuse_second(address: str) -> str | None:
        return "550 5.1.1 Mailbox unavailable" if address.startswith("customer2@") else None

    handler = ScriptedHandler(rcpt_reply=refuse_second)
    server = smtp_server("starttls", users={USER: PASSWORD}, handler=handler)
    batch = [message(f"customer{n}@customer.example") for n in (1, 2, 3)]

    with transport(server.port, "starttls", USER, PASSWORD) as smtp:
        first, second, third = smtp.send_messages(batch)

    assert isinstance(first, Delivery) and isinstance(third, Delivery)
    assert isinstance(second, Failure) and second.category == "recipient_rejected"
    assert list(second.refused) == ["customer2@customer.example"]
    assert [m.rcpt_tos for m in server.messages] == [
        ("customer1@customer.example",),
        ("customer3@customer.example",),
    ]
    assert len(handler.peers) == 1


def test_batch_reports_the_rest_as_lost_when_the_connection_drops(smtp_server, transport):
    handler = ScriptedHandler(drop_on_mail=2)
    server = smtp_server("starttls", users={USER: PASSWORD}, handler=handler)
    batch = [message(f"customer{n}@customer.example") for n in (1, 2, 3)]

    with transport(server.port, "starttls", USER, PASSWORD) as smtp:
        first, second, third = smtp.send_messages(batch)

    assert isinstance(first, Delivery)
    assert isinstance(second, Failure) and second.category == "connection_lost" and second.transient
    assert third == second
    assert len(server.messages) == 1 and handler.mail_commands == 2


# --- nothing left behind ---------------------------------------------------------------------------


def _run_failing_sends(transport: MakeTransport, server_tls: ssl.SSLContext) -> list[str]:
    """Every failure the transport can meet while opening or sending, each against its own server."""
    categories = []
    refuse_all = ScriptedHandler(rcpt_reply=lambda address: "550 5.1.1 User unknown")
    with (
        LocalSmtpServer("starttls", server_context=server_tls, users={USER: PASSWORD}) as auth,
        LocalSmtpServer(
            "starttls", server_context=server_tls, users={USER: PASSWORD}, handler=refuse_all
        ) as rcpt,
        LocalSmtpServer("plain") as plain,
        LocalSmtpServer("ssl", server_context=server_tls) as implicit,
        SilentListener() as silent,
    ):
        attempts = [
            transport(auth.port, "starttls", USER, "wrong"),
            transport(rcpt.port, "starttls", USER, PASSWORD),
            transport(plain.port, "starttls"),
            transport(plain.port, "ssl"),
            transport(auth.port, "ssl"),
            transport(implicit.port, "starttls", timeout=0.5),
            transport(silent.port, "starttls", timeout=0.5),
            transport(free_port(), "starttls"),
        ]
        for attempt in attempts:
            categories.append(failure_of(attempt).category)
    return categories


def test_failed_sends_leave_no_thread_behind(transport, server_tls):
    # The threads alive before, by identity: a thread of an earlier test that ends meanwhile must
    # not hide one these sends left (a count would).
    before = set(threading.enumerate())

    def started_since() -> int:
        return len([t for t in threading.enumerate() if t not in before])

    categories = _run_failing_sends(transport, server_tls)

    assert len(categories) == 8
    assert settle(started_since, 0, seconds=2.0) == 0, threading.enumerate()


def test_failed_sends_leave_no_socket_open(transport, server_tls):
    before = socket_inodes()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        _run_failing_sends(transport, server_tls)
        gc.collect()

    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []
    assert settle(lambda: len(socket_inodes() - before), 0, seconds=2.0) == 0
