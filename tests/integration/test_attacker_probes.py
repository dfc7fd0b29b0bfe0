"""What an attacker tried against the running system, through the API, with real loopback servers:
each must fail now. Address-guard probes only ever aim at loopback (127.0.0.2 and friends)."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import threading

import pytest

from local.events import USER, Identity
from tests.support.api import cold_start
from tests.support.factories import smtp_settings
from tests.support.smtp import ScriptedHandler, _line

ACCOUNT = "billing@acme.example"
PASSWORD = "s3cret-Passw0rd"


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


@pytest.fixture
def saved(api, trust_local_ca, mail_server):
    status, body, _ = api.call(
        "PUT", "/settings/company", smtp_settings(ACCOUNT, PASSWORD, port=mail_server.port)
    )
    assert status == 200, body
    return mail_server


class Listener:
    """A TCP listener on a loopback address that counts the connections it gets (and answers none)."""

    def __init__(self, host: str) -> None:
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def listener_127_0_0_2():
    listener = Listener("127.0.0.2")
    yield listener
    listener.close()


# --- 1. the saved password goes only where it was saved for -------------------------------------


def test_a_borrowed_password_is_never_sent_to_another_port(api, saved, smtp_server):
    handler = ScriptedHandler()
    attacker = smtp_server("starttls", users={ACCOUNT: "anything"}, handler=handler)
    body = smtp_settings(ACCOUNT, PASSWORD, port=attacker.port) | {
        "profile": "company",
        "to": "a@acme.example",
    }
    del body["password"]

    status, problem, _ = api.call("POST", "/settings/test", body)

    assert status == 422 and problem["errors"][0]["field"] == "password"
    assert handler.auth_commands == []


def test_a_borrowed_password_still_works_for_its_own_host_port_and_username(api, saved):
    body = smtp_settings(ACCOUNT, PASSWORD, port=saved.port) | {"profile": "company", "to": "a@acme.example"}
    del body["password"]

    status, result, _ = api.call("POST", "/settings/test", body)

    assert status == 200 and result["ok"] is True, result


@pytest.mark.parametrize(
    "change", [{"port": 2525}, {"username": "other@acme.example"}, {"host": "localhost"}]
)
def test_saving_another_host_port_or_username_without_the_password_is_refused(api, saved, change):
    body = smtp_settings(ACCOUNT, PASSWORD, port=saved.port) | change
    del body["password"]

    status, problem, _ = api.call("PUT", "/settings/company", body)

    assert status == 422 and [e["field"] for e in problem["errors"]] == ["password"]
    assert api.call("GET", "/settings/company")[1]["port"] == saved.port  # nothing changed


def test_saving_the_same_account_without_the_password_keeps_it(api, saved):
    body = smtp_settings(ACCOUNT, PASSWORD, port=saved.port, from_name="Acme Billing")
    del body["password"]

    status, view, _ = api.call("PUT", "/settings/company", body)

    assert status == 200 and view["password_set"] is True and view["from_name"] == "Acme Billing"


# --- 2. the address guard ------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.2", "2130706434", "0177.0.0.2", "0"])
def test_an_internal_address_is_refused_and_never_connected_to(api, trust_local_ca, listener_127_0_0_2, host):
    body = smtp_settings(ACCOUNT, PASSWORD, port=listener_127_0_0_2.port, host=host) | {
        "to": "a@acme.example"
    }

    status, result, _ = api.call("POST", "/settings/test", body)

    assert status == 200 and result["ok"] is False
    assert (result["stage"], result["category"]) == ("connect", "address_not_allowed")
    assert listener_127_0_0_2.connections == 0


def test_saving_an_internal_host_is_a_422_naming_host(api, listener_127_0_0_2):
    body = smtp_settings(ACCOUNT, PASSWORD, port=listener_127_0_0_2.port, host="127.0.0.2")

    status, problem, _ = api.call("PUT", "/settings/company", body)

    assert status == 422 and problem["errors"][0]["field"] == "host"
    assert listener_127_0_0_2.connections == 0


def test_a_name_pointing_inside_is_refused_at_save(api):
    body = smtp_settings(ACCOUNT, PASSWORD, port=587, host="relay.internal.test")

    status, problem, _ = api.call("PUT", "/settings/company", body)

    assert status == 422 and problem["errors"][0]["field"] == "host"


def test_a_name_that_does_not_resolve_is_saved_with_a_warning(api):
    body = smtp_settings(ACCOUNT, PASSWORD, port=587, host="smtp.not-yet.example")

    status, view, _ = api.call("PUT", "/settings/company", body)

    assert status == 200 and any(w["field"] == "host" for w in view["warnings"])


def test_loopback_is_refused_unless_its_network_is_admitted(
    api, template, trust_local_ca, smtp_server, monkeypatch
):
    server = smtp_server("starttls", users={ACCOUNT: PASSWORD})
    monkeypatch.setenv("MAILER_ALLOWED_NETWORKS", "127.0.0.8/32")  # 127.0.0.1 no longer admitted
    cold_start(template)
    body = smtp_settings(ACCOUNT, PASSWORD, port=server.port) | {"to": "a@acme.example"}

    refused = api.call("POST", "/settings/test", body)[1]

    assert refused["category"] == "address_not_allowed" and server.messages == []


def test_a_banner_that_is_not_smtp_is_protocol_with_no_server_text(api, trust_local_ca, scripted_server):
    ssh = scripted_server(lambda conn: conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"))
    body = smtp_settings(ACCOUNT, PASSWORD, port=ssh.port) | {"to": "a@acme.example"}

    result = api.call("POST", "/settings/test", body)[1]

    assert (result["category"], result["server_message"]) == ("protocol", None)
    assert "SSH" not in json.dumps(result)


def test_a_non_admin_tests_unsaved_settings_only_towards_their_own_address(api, trust_local_ca, mail_server):
    body = smtp_settings(ACCOUNT, PASSWORD, port=mail_server.port) | {"to": "someone@else.example"}

    status, _, _ = api.call("POST", "/settings/test", body, identity=USER)

    assert status == 403 and mail_server.messages == []


# --- 3. what a server echoes never carries the password ------------------------------------------


def echoing_auth_server(server_tls: ssl.SSLContext):
    """Implicit TLS; answers AUTH with a 535 that repeats the whole AUTH line, as some servers do."""

    def script(conn: socket.socket) -> None:
        tls = server_tls.wrap_socket(conn, server_side=True)
        tls.sendall(b"220 mail.acme.example ESMTP\r\n")
        while line := _line(tls):
            if line.upper().startswith((b"EHLO", b"HELO")):
                tls.sendall(b"250-mail.acme.example\r\n250 AUTH PLAIN LOGIN\r\n")
            elif line.upper().startswith(b"AUTH"):
                tls.sendall(b"535 5.7.8 Authentication failed: " + line.strip() + b"\r\n")
            else:
                tls.sendall(b"221 bye\r\n")
                return

    return script


def test_a_535_echoing_auth_plain_shows_no_password_anywhere(
    api, trust_local_ca, scripted_server, server_tls
):
    server = scripted_server(echoing_auth_server(server_tls))
    body = smtp_settings(ACCOUNT, PASSWORD, port=server.port, security="ssl") | {"to": "a@acme.example"}

    result = api.call("POST", "/settings/test", body)[1]
    entry = api.call("GET", f"/emails/{result['email_id']}")[1]

    assert result["category"] == "auth_failed" and "535" in str(result["smtp_code"])
    plain = base64.b64encode(f"\0{ACCOUNT}\0{PASSWORD}".encode()).decode()
    shown = json.dumps(result) + json.dumps(entry)
    assert PASSWORD not in shown and plain not in shown and plain.rstrip("=") not in shown
    assert "[hidden]" in result["server_message"] and len(result["server_message"]) <= 512


# --- 8. a cursor of another tenant, one character longer ----------------------------------------


def test_a_cursor_naming_another_tenant_whose_id_extends_ours_is_refused(api):
    key = {
        "pk": "TENANT#demo",
        "sk": "EMAIL#01",
        "gsi1pk": "TENANT#demo2#DOC#invoice#INV-1",
        "gsi1sk": "01",
    }
    cursor = base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")

    status, problem, _ = api.call(
        "GET", "/emails", query={"document_type": "invoice", "document_number": "INV-1", "cursor": cursor}
    )

    assert status == 422 and problem["errors"][0]["field"] == "cursor"


# --- 9. an unverified email claim -----------------------------------------------------------------


def test_an_unverified_email_is_not_the_default_test_recipient(api, saved):
    unverified = Identity(email="attacker@else.example", email_verified=False)

    status, problem, _ = api.call("POST", "/settings/company/test", {}, identity=unverified)

    assert status == 422 and problem["errors"][0]["field"] == "to"
    assert saved.messages == []


# --- 7. display names, international domains, duplicates -----------------------------------------

EVIL_NAME = "=?utf-8?b?" + base64.b64encode(b"Support\r\nBcc: evil@else.example").decode() + "?="


def test_an_encoded_word_typed_as_the_from_name_shows_literally(api, saved):
    body = smtp_settings(ACCOUNT, PASSWORD, port=saved.port, from_name=EVIL_NAME)
    assert api.call("PUT", "/settings/company", body)[0] == 200

    result = api.call("POST", "/settings/company/test", {"to": "a@acme.example"})[1]

    assert result["ok"] is True, result
    (received,) = saved.messages
    message = received.parsed()
    (sender,) = message["From"].addresses
    assert "\r" not in sender.display_name and "\n" not in sender.display_name
    assert "utf-8?b?" in sender.display_name  # the text as typed, not what it encodes
    assert "Bcc" not in message and received.rcpt_tos == ("a@acme.example",)


def test_international_domains_go_out_as_a_labels(api, saved):
    body = {
        "document": {"type": "invoice", "number": "INV-1"},
        "to": ["dana@bücher.example", "lee@xn--caf-dma.example"],
    }

    status, entry, _ = api.call("POST", "/documents/email", body)

    assert status == 200, entry
    (received,) = saved.messages
    assert set(received.rcpt_tos) == {"dana@xn--bcher-kva.example", "lee@xn--caf-dma.example"}
    assert {a.domain for a in received.parsed()["To"].addresses} == {
        "xn--bcher-kva.example",
        "xn--caf-dma.example",
    }


def test_a_recipient_written_twice_is_sent_once_and_listed_once(api, saved):
    body = {
        "document": {"type": "invoice", "number": "INV-1"},
        "to": ["dana@customer.example", "DANA@customer.example"],
        "cc": ["Dana@Customer.example", "lee@customer.example"],
        "bcc": ["lee@customer.example"],
    }

    status, entry, _ = api.call("POST", "/documents/email", body)

    assert status == 200, entry
    (received,) = saved.messages
    assert sorted(a.casefold() for a in received.rcpt_tos) == [
        "dana@customer.example",
        "lee@customer.example",
    ]
    message = received.parsed()
    assert [a.addr_spec for a in message["To"].addresses] == ["dana@customer.example"]
    assert [a.addr_spec for a in message["Cc"].addresses] == ["lee@customer.example"]
