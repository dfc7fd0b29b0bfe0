"""A real IMAP server for tests: Dovecot on 127.0.0.1, started and stopped per test in well under a second.

`start_imap_server(tmp_path)` runs `dovecot -F -c <generated config>` with everything of its own in
a fresh directory: base_dir (its sockets), state_dir, the log, the maildirs. It listens on two free
loopback ports, IMAPS and IMAP with STARTTLS, with a throwaway certificate from trustme for
`localhost` and `127.0.0.1`; `ca_bundle` is that CA as a PEM file, for the client's
`extra_ca_bundle`. Users sign in with a password (passdb passwd-file, plain passwords) or with
AUTHENTICATE XOAUTH2: an `oauth2` passdb asks an introspection endpoint on 127.0.0.1, run here,
which accepts the tokens in `tokens` only. Mail arrives through real IMAP APPEND (`append`), and
`flags` reads every message's flags, so a test can check that a reader changed none.

The directory is not under pytest's tmp_path: pytest makes that 0700, and Dovecot's unprivileged
processes (the mail user, the login user) must reach their sockets and maildirs; unix socket paths
are also limited to 108 bytes. It is removed on stop(); the log is copied to tmp_path first.

When run as root (as here), the maildirs belong to `nobody` and Dovecot's own processes run as the
users the package created (dovecot, dovenull); otherwise everything runs as the current user. The
packaged Dovecot service is never used, and nothing listens beyond loopback.
"""

from __future__ import annotations

import grp
import http.server
import imaplib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType

import trustme

from local.smtp_server import free_port

HOST = "127.0.0.1"
USER = "bounces@acme.example.com"
PASSWORD = "correct horse battery staple"
TOKEN = "ya29.test-access-token-for-bounces"
START_TIMEOUT = 10.0
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])
APPENDUID = re.compile(rb"APPENDUID (\d+) (\d+)")
COUNTER = re.compile(r"(\w+)=(\d+)")
FETCHED_FLAGS = re.compile(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+)")


class DovecotMissing(RuntimeError):
    """Dovecot is not installed: the tests that need it fail (they never skip)."""


def dovecot_binary() -> str:
    found = shutil.which("dovecot", path=SEARCH_PATH)
    if found is None:
        raise DovecotMissing(
            "dovecot is not installed: `make pytest` installs it (Debian package dovecot-imapd), "
            "or run `apt-get install dovecot-imapd`"
        )
    return found


# --- the OAuth 2.0 token introspection endpoint Dovecot's oauth2 passdb asks --------------------------


class _Introspection(http.server.BaseHTTPRequestHandler):
    """RFC 7662 introspection: POST token=...; active with the user's name, or not active."""

    tokens: dict[str, str] = {}  # token -> user; each endpoint's handler class has its own

    def do_POST(self) -> None:
        length = min(int(self.headers.get("Content-Length") or 0), 65536)
        form = urllib.parse.parse_qs(self.rfile.read(length).decode("utf-8", "replace"))
        user = self.tokens.get((form.get("token") or [""])[0])
        body = json.dumps({"active": True, "username": user} if user else {"active": False}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class IntrospectionEndpoint:
    """The endpoint on a free loopback port, in a thread of its own, accepting `tokens` only."""

    def __init__(self, tokens: dict[str, str]) -> None:
        handler = type("Introspection", (_Introspection,), {"tokens": dict(tokens)})
        self._server = http.server.ThreadingHTTPServer((HOST, 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://{HOST}:{self._server.server_address[1]}/introspect"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="imap-oauth2-introspection", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


# --- the server ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Accounts:
    """Who runs what: the owner of the maildirs, and Dovecot's internal and login users."""

    mail_uid: int
    mail_gid: int
    internal_user: str
    internal_group: str
    login_user: str
    rootless: bool

    @classmethod
    def for_this_process(cls) -> _Accounts:
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            return cls(nobody.pw_uid, nobody.pw_gid, "dovecot", "dovecot", "dovenull", rootless=False)
        me = pwd.getpwuid(os.geteuid())
        group = grp.getgrgid(me.pw_gid).gr_name
        return cls(me.pw_uid, me.pw_gid, me.pw_name, group, me.pw_name, rootless=True)


def _config(root: Path, imap_port: int, imaps_port: int, accounts: _Accounts) -> str:
    uid, gid = accounts.mail_uid, accounts.mail_gid
    rootless = (
        "service imap-login {\n  chroot =\n}\nservice anvil {\n  chroot =\n}\n" if accounts.rootless else ""
    )
    return f"""\
# Generated for one test run: everything of this server lives in {root}.
base_dir = {root}/run
state_dir = {root}/state
instance_name = test-imap-{imaps_port}
log_path = {root}/dovecot.log
protocols = imap
listen = {HOST}
default_internal_user = {accounts.internal_user}
default_internal_group = {accounts.internal_group}
default_login_user = {accounts.login_user}
first_valid_uid = {uid}
last_valid_uid = {uid}
first_valid_gid = {gid}
last_valid_gid = {gid}
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login xoauth2
# A refused sign-in answers at once: no failure delay, and no penalty for the next sign-in from the
# same address (anvil's, 2 s doubling to 15 s), which would only slow the tests down.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
mail_location = maildir:{root}/mail/%u
mail_uid = {uid}
mail_gid = {gid}
passdb {{
  driver = passwd-file
  mechanisms = plain login
  args = scheme=PLAIN {root}/passwd
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2
  args = {root}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = {HOST}
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {imaps_port}
    ssl = yes
  }}
}}
{rootless}"""


def _oauth2_config(url: str) -> str:
    return f"""\
introspection_mode = post
introspection_url = {url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
"""


@dataclass
class ImapServer:
    """A running Dovecot; `users` maps each user to its password, `tokens` each access token to its user."""

    host: str
    imap_port: int  # IMAP, STARTTLS offered
    imaps_port: int  # IMAPS, TLS from the start
    ca_bundle: Path
    users: dict[str, str]
    tokens: dict[str, str]
    root: Path
    log_copy: Path
    _endpoint: IntrospectionEndpoint
    _process: subprocess.Popen[bytes] | None = None
    _context: ssl.SSLContext = field(init=False)

    def __post_init__(self) -> None:
        self._context = ssl.create_default_context(cafile=str(self.ca_bundle))

    # -- what tests do with the mailbox, over IMAP as any client would ---------------------------------

    @contextmanager
    def session(self, user: str = USER, password: str | None = None) -> Iterator[imaplib.IMAP4_SSL]:
        """A signed-in IMAPS session as `user`, logged out afterwards."""
        conn = imaplib.IMAP4_SSL(self.host, self.imaps_port, ssl_context=self._context, timeout=10)
        try:
            conn.login(user, password if password is not None else self.users[user])
            yield conn
        finally:
            try:
                conn.logout()
            except (imaplib.IMAP4.error, OSError):
                conn.shutdown()

    def append(
        self,
        user: str,
        password: str,
        raw: bytes,
        flags: Iterable[str] = (),
        *,
        folder: str = "INBOX",
        internal_date: datetime | None = None,
    ) -> int:
        """APPEND `raw` to the folder; the new message's UID (from APPENDUID)."""
        with self.session(user, password) as conn:
            flag_list = f"({' '.join(flags)})" if flags else None
            date = imaplib.Time2Internaldate(internal_date) if internal_date else None
            status, data = conn.append(_quoted(folder), flag_list, date, raw)
            assert status == "OK", data
            match = APPENDUID.search(b" ".join(d for d in data if isinstance(d, bytes)))
            assert match, data
            return int(match.group(2))

    def flags(self, user: str, password: str, *, folder: str = "INBOX") -> dict[int, frozenset[str]]:
        """Every message's stored flags by UID, read without changing them (\\Recent, which belongs
        to a session and is not stored, left out)."""
        with self.session(user, password) as conn:
            status, data = conn.select(_quoted(folder), readonly=True)
            assert status == "OK", data
            status, data = conn.uid("FETCH", "1:*", "(FLAGS)")
            assert status == "OK", data
        found: dict[int, frozenset[str]] = {}
        for line in data:
            match = FETCHED_FLAGS.search(line) if isinstance(line, bytes) else None
            if match:
                uid = match.group(1) or match.group(4)
                flags = (match.group(2) if match.group(1) else match.group(3)).decode().split()
                found[int(uid)] = frozenset(f for f in flags if f != "\\Recent")
        return found

    def uidvalidity(self, user: str, password: str, *, folder: str = "INBOX") -> int:
        with self.session(user, password) as conn:
            status, data = conn.status(_quoted(folder), "(UIDVALIDITY)")
            assert status == "OK", data
        match = re.search(rb"UIDVALIDITY (\d+)", data[0])
        assert match, data
        return int(match.group(1))

    def create_folder(self, user: str, password: str, folder: str) -> None:
        with self.session(user, password) as conn:
            status, data = conn.create(_quoted(folder))
            assert status == "OK", data

    def recreate_folder(self, user: str, password: str, folder: str) -> None:
        """DELETE and CREATE the folder: its mail is gone and Dovecot gives it a new UIDVALIDITY."""
        with self.session(user, password) as conn:
            for command in (conn.delete, conn.create):
                status, data = command(_quoted(folder))
                assert status == "OK", data

    def sessions(self, *, at_least: int = 0, timeout: float = 5.0) -> list[dict[str, int]]:
        """What each ended IMAP session did, from Dovecot's log, oldest first: the counters it logs
        when a session logs out (body_count: messages whose body was fetched; deleted, expunged).
        Waits for `at_least` of them: the log is written a moment after the session ends."""
        deadline = time.monotonic() + timeout
        while True:
            found = [
                {name: int(value) for name, value in COUNTER.findall(line)}
                for line in self.log().splitlines()
                if "Disconnected: Logged out" in line
            ]
            if len(found) >= at_least or time.monotonic() > deadline:
                return found
            time.sleep(0.01)

    def logged(self, text: str, *, timeout: float = 5.0) -> bool:
        """Whether Dovecot's log says `text`, waiting for it a little (the log is written a moment late)."""
        deadline = time.monotonic() + timeout
        while text not in self.log():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    # -- life cycle -----------------------------------------------------------------------------------

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """Stop Dovecot (SIGTERM to its process group, wait), the endpoint, and remove the directory."""
        process, self._process = self._process, None
        if process is not None:
            _end_group(process)
        self._endpoint.stop()
        if self.root.exists():
            self.log_copy.write_text(self.log())
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ImapServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def write_ca_bundle(ca: trustme.CA, path: Path) -> Path:
    ca.cert_pem.write_to_path(str(path))
    return path


def start_imap_server(
    tmp_path: Path,
    *,
    users: dict[str, str] | None = None,
    tokens: dict[str, str] | None = None,
    attempts: int = 3,
    ca: trustme.CA | None = None,
    ports: tuple[int, int] | None = None,
) -> ImapServer:
    """Dovecot on two free loopback ports, accepting connections when this returns; stop() it.

    Default: one user, USER with PASSWORD, whose access token TOKEN signs in with XOAUTH2. A port
    taken by another process between choosing and binding it is retried with new ones."""
    binary = dovecot_binary()
    users = dict(users if users is not None else {USER: PASSWORD})
    tokens = dict(tokens if tokens is not None else {TOKEN: USER})
    ca = ca or trustme.CA()
    for attempt in range(1, attempts + 1):
        imap_port, imaps_port = ports or _two_free_ports()
        server = ImapServer(
            host=HOST,
            imap_port=imap_port,
            imaps_port=imaps_port,
            ca_bundle=write_ca_bundle(ca, tmp_path / "imap-ca.pem"),
            users=users,
            tokens=tokens,
            root=Path(tempfile.mkdtemp(prefix="imap-", dir="/tmp")),
            log_copy=tmp_path / "dovecot.log",
            _endpoint=IntrospectionEndpoint(tokens),
        )
        try:
            _configure(server, ca)
            server._process = _launch(binary, server.root)
            _wait_until_greeting(server)
            return server
        except _PortTaken:
            server.stop()
            if attempt == attempts:
                raise
        except BaseException:
            server.stop()
            raise
    raise AssertionError("unreachable")


def _two_free_ports() -> tuple[int, int]:
    """Two different free ports: the system may hand the same one out twice, as each is closed
    before the next is asked for, and Dovecot refuses two listeners on one port."""
    first = free_port()
    while (second := free_port()) == first:
        pass
    return first, second


class _PortTaken(RuntimeError):
    pass


def _configure(server: ImapServer, ca: trustme.CA) -> None:
    """The directory: config, certificate, users, and the maildirs' root owned by the mail user."""
    root, accounts = server.root, _Accounts.for_this_process()
    root.chmod(0o755)  # the mail user and Dovecot's unprivileged processes must traverse it
    for name in ("run", "state", "mail"):
        (root / name).mkdir()
    os.chown(root / "mail", accounts.mail_uid, accounts.mail_gid)
    certificate = ca.issue_cert("localhost", HOST)
    certificate.private_key_pem.write_to_path(str(root / "key.pem"))
    (root / "cert.pem").write_bytes(b"".join(pem.bytes() for pem in certificate.cert_chain_pems))
    (root / "passwd").write_text("".join(f"{user}:{{PLAIN}}{pw}\n" for user, pw in server.users.items()))
    (root / "oauth2.conf.ext").write_text(_oauth2_config(server._endpoint.url))
    (root / "dovecot.conf").write_text(_config(root, server.imap_port, server.imaps_port, accounts))


def _launch(binary: str, root: Path) -> subprocess.Popen[bytes]:
    """`dovecot -F` (in the foreground, so it is our child) in a process group of its own."""
    with (root / "dovecot.out").open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - the dovecot binary found on PATH, our own config
            [binary, "-F", "-c", str(root / "dovecot.conf")],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def _end_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group, wait; SIGKILL after 10 s. The master alone would end its other
    processes but wait a second for its log process; and the signal waits (at most a second) until
    no session process is still ending, which would also hold the master a second."""
    deadline = time.monotonic() + 1
    while _sessions_running(process.pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(10)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def _sessions_running(group: int) -> bool:
    """Whether an imap or imap-login process of the group still runs (read from /proc)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1 : text.rfind(")")]
        fields = text[text.rfind(")") + 2 :].split()  # state, ppid, pgrp, ...
        if len(fields) > 2 and fields[2] == str(group) and name.startswith("imap"):
            return True
    return False


def _wait_until_greeting(server: ImapServer) -> None:
    """Both listeners answer with an IMAP greeting, or the reason Dovecot gave for stopping."""
    assert server._process is not None
    deadline = time.monotonic() + START_TIMEOUT
    waiting = {server.imap_port, server.imaps_port}
    while waiting:
        if server._process.poll() is not None:
            said = (server.root / "dovecot.out").read_text(errors="replace") + server.log()
            if "Address already in use" in said:
                raise _PortTaken(said)
            raise RuntimeError(f"dovecot exited with {server._process.returncode}:\n{said}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"dovecot did not listen within {START_TIMEOUT} s:\n{server.log()}")
        for port in sorted(waiting):
            if _greets(port, tls=port == server.imaps_port, ca_bundle=server.ca_bundle):
                waiting.discard(port)
        if waiting:
            time.sleep(0.01)


def _greets(port: int, *, tls: bool, ca_bundle: Path) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as raw:
            if tls:
                context = ssl.create_default_context(cafile=str(ca_bundle))
                with context.wrap_socket(raw, server_hostname=HOST) as sock:
                    return sock.recv(64).startswith(b"* OK")
            return raw.recv(64).startswith(b"* OK")
    except OSError:
        return False


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
