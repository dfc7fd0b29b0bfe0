"""The whole system on this machine, no AWS account and no Docker: `python -m local.run` (`make run`).

moto's server holds the template's tables, queues and the passwords, a loopback SMTP server with
STARTTLS and AUTH keeps every message as an .eml file, an HTTP server routes the template's API to the
real handlers, and a poller feeds the outbox queue to the email worker as Lambda's SQS event source
would. The demo tenant is seeded through the real handlers: its company settings, its three automated
emails switched on, and work orders around tomorrow (no email is sent until you ask for it).
`start_stack()` does it in-process for tests; `main()` adds the banner and waits for a signal.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import socket
import ssl
import sys
import time
import tomllib
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import boto3
import requests
import trustme
from moto.server import ThreadedMotoServer

from local import demo_data
from local.events import ADMIN, http_event, json_request
from local.handlers import Functions, add_layers_to_path, reset_shared_clients, shared_environment
from local.http_server import LocalApiServer, match_route
from local.openapi import docs_pages, openapi_document
from local.outbox_poller import QueuePoller
from local.smtp_server import LocalSmtpServer, ReceivedMessage, quiet_aiosmtpd
from local.template import ROOT, Template

HOST = "127.0.0.1"
TENANT = "demo"
FROM_EMAIL = "billing@demo.test"


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or str(default)
    if not raw.isdigit() or int(raw) > 65535:
        raise ValueError(f"{name}={raw!r} is not a port number")
    return int(raw)


@dataclass(frozen=True)
class StackConfig:
    api_port: int = 3000
    smtp_port: int = 1025
    moto_port: int = 5055
    mail_dir: Path = ROOT / "var" / "mail"
    tls_dir: Path = ROOT / "var" / "tls"
    smtp_username: str = "billing@demo.test"
    smtp_password: str = "demo-app-password"
    operator_ca_bundle: str | None = None  # MAILER_EXTRA_CA_BUNDLE given by the operator wins
    retry_seconds: int = 2  # a failed outbox record comes back after this, not the queue's 12 minutes

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StackConfig:
        env = os.environ if env is None else env
        return cls(
            api_port=_port(env, "API_PORT", cls.api_port),
            smtp_port=_port(env, "SMTP_PORT", cls.smtp_port),
            moto_port=_port(env, "MOTO_PORT", cls.moto_port),
            mail_dir=Path(env.get("MAIL_DIR") or cls.mail_dir).resolve(),
            tls_dir=Path(env.get("TLS_DIR") or cls.tls_dir).resolve(),
            smtp_username=env.get("SMTP_USERNAME") or cls.smtp_username,
            smtp_password=env.get("SMTP_PASSWORD") or cls.smtp_password,
            operator_ca_bundle=env.get("MAILER_EXTRA_CA_BUNDLE") or None,
        )


class EnvOverlay:
    """Process-wide variables (boto3 and the handlers read os.environ), put back as they were on restore."""

    def __init__(self) -> None:
        self._saved: dict[str, str | None] = {}

    def set(self, values: Mapping[str, str]) -> None:
        for key, value in values.items():
            self._saved.setdefault(key, os.environ.get(key))
            os.environ[key] = value

    def unset(self, *keys: str) -> None:
        for key in keys:
            self._saved.setdefault(key, os.environ.get(key))
            os.environ.pop(key, None)

    def restore(self) -> None:
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved.clear()


class _DropLoginDataNotice(logging.Filter):
    """aiosmtpd warns about its own use of a deprecated attribute on every AUTH; not news to the operator."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


def quiet_logs() -> None:
    quiet_aiosmtpd()
    mail_log = logging.getLogger("mail.log")
    if not any(isinstance(f, _DropLoginDataNotice) for f in mail_log.filters):
        mail_log.addFilter(_DropLoginDataNotice())
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server: one line per AWS call


def ensure_free(name: str, port: int) -> None:
    """Fail with the variable to change; moto's server thread would otherwise hang on a taken port."""
    if port == 0:
        return
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            raise OSError(
                f"port {port} on {HOST} is taken ({exc.strerror}); set {name} to another port"
            ) from None


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    server_context: ssl.SSLContext


def make_tls(directory: Path) -> TlsFiles:
    """A throwaway CA and a certificate for localhost and 127.0.0.1, new on every start."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="company-mail local stack")
    leaf = ca.issue_cert("localhost", HOST)
    ca_file, cert_file, key_file = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    ca.cert_pem.write_to_path(str(ca_file))
    leaf.cert_chain_pems[0].write_to_path(str(cert_file))
    leaf.private_key_pem.write_to_path(str(key_file))
    key_file.chmod(0o600)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    leaf.configure_cert(context)
    return TlsFiles(ca_file, cert_file, key_file, context)


def project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


def print_message(out: Callable[[str], None]) -> Callable[[ReceivedMessage], None]:
    def on_message(message: ReceivedMessage) -> None:
        subject = message.parsed().get("Subject", "")
        when = datetime.now().strftime("%H:%M:%S")
        out(
            f"[{when}] mail from {message.mail_from} to {', '.join(message.rcpt_tos)}: "
            f"{subject!r} -> {message.path}"
        )

    return on_message


def demo_settings(config: StackConfig) -> dict[str, Any]:
    """Company settings of the demo tenant: the local SMTP server, as an admin would save them."""
    return {
        "transport": "smtp",
        "host": HOST,
        "port": config.smtp_port,
        "security": "starttls",
        "username": config.smtp_username,
        "password": config.smtp_password,
        "from_name": "Demo Plumbing & Heating",
        "from_email": FROM_EMAIL,
        "timezone": demo_data.TIMEZONE,
        "notify_email": "owner@demo.test",
    }


@dataclass
class LocalStack:
    config: StackConfig
    out: Callable[[str], None] = print
    template: Template = field(default_factory=Template)
    env: EnvOverlay = field(default_factory=EnvOverlay)
    moto: ThreadedMotoServer | None = None
    smtp: LocalSmtpServer | None = None
    api: LocalApiServer | None = None
    pollers: list[QueuePoller] = field(default_factory=list)
    functions: Functions | None = None
    tls: TlsFiles | None = None
    modules: dict[str, ModuleType] = field(default_factory=dict)
    moto_url: str = ""
    ca_bundle: str = ""
    demo_today: date | None = None  # the day the demo work orders were placed around

    @property
    def outbox(self) -> QueuePoller:
        """The poller of the outbox queue (Lambda's event source of the email worker)."""
        poller = next((p for p in self.pollers if p.source.queue == "OutboxQueue"), None)
        assert poller is not None, "the stack is not started"
        return poller

    @property
    def api_url(self) -> str:
        assert self.api is not None, "the stack is not started"
        return self.api.url

    @property
    def smtp_port(self) -> int:
        assert self.smtp is not None, "the stack is not started"
        return self.smtp.port

    @property
    def mail_dir(self) -> Path:
        return self.config.mail_dir

    def start(self) -> LocalStack:
        try:
            self._start_moto()
            self.tls = make_tls(self.config.tls_dir)
            self._start_smtp()
            self._load_functions()
            self._seed()
            self._start_pollers()
            self._start_api()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_moto(self) -> None:
        for name, port in (
            ("API_PORT", self.config.api_port),
            ("SMTP_PORT", self.config.smtp_port),
            ("MOTO_PORT", self.config.moto_port),
        ):
            ensure_free(name, port)
        quiet_logs()
        self.moto = ThreadedMotoServer(ip_address=HOST, port=self.config.moto_port, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        no_proxy = ",".join(filter(None, [os.environ.get("NO_PROXY") or os.environ.get("no_proxy"), HOST]))
        self.env.unset(
            "AWS_PROFILE",
            "AWS_DEFAULT_PROFILE",
            "AWS_SESSION_TOKEN",
            *[key for key in os.environ if key.startswith("AWS_ENDPOINT_URL_")],
        )
        self.env.set(
            {
                "AWS_ENDPOINT_URL": self.moto_url,
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1",
                "NO_PROXY": no_proxy,
                "no_proxy": no_proxy,
            }
        )
        # moto keeps its state per process: a stack started again here must not see the last one's.
        requests.post(f"{self.moto_url}/moto-api/reset", timeout=10).raise_for_status()
        self.template.create_all(boto3.Session())

    def _start_smtp(self) -> None:
        assert self.tls is not None
        self.smtp = LocalSmtpServer(
            mode="starttls",
            host=HOST,
            port=self.config.smtp_port,
            server_context=self.tls.server_context,
            users={self.config.smtp_username: self.config.smtp_password},
            mail_dir=self.config.mail_dir,
            on_message=print_message(self.out),
        ).start()

    def _load_functions(self) -> None:
        assert self.tls is not None
        self.ca_bundle = self.config.operator_ca_bundle or str(self.tls.ca)
        self.env.set(
            shared_environment(self.template)
            | {
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_METRICS_NAMESPACE": "CompanyMailLocal",
                "MAILER_EXTRA_CA_BUNDLE": self.ca_bundle,
            }
        )
        add_layers_to_path(self.template)
        reset_shared_clients()
        self.functions = Functions(self.template)
        self.modules = self.functions.load_all()

    def _seed_call(self, method: str, path: str, body: Any = None) -> Any:
        """One request to the real handler as the demo admin, without HTTP; the decoded JSON answer."""
        assert self.functions is not None
        match = match_route(self.template.routes(), method, path)
        if match.route is None:
            raise RuntimeError(f"template.yaml has no route for {method} {path}")
        request = json_request(method, path, match.route.path, body, **match.path_parameters)
        result = self.functions.invoke(match.route.function, http_event(request, ADMIN))
        if result.get("statusCode") != 200:
            raise RuntimeError(f"seeding the demo tenant failed: {method} {path} answered {result}")
        return json.loads(result.get("body") or "null")

    def _seed(self) -> None:
        """Through the real handlers, so the password goes to Secrets Manager, the active reminder to the
        index the noon run reads, and the work orders to the reminder index, as in production."""
        self._seed_call("PUT", "/settings/company", demo_settings(self.config))
        for automation_type in demo_data.AUTOMATION_TYPES:
            path = f"/automations/{automation_type}"
            self._seed_call("PUT", path, demo_data.activated(self._seed_call("GET", path)))
        self.demo_today = demo_data.today_in(demo_settings(self.config)["timezone"])
        for work_order_id, body in demo_data.demo_work_orders(self.demo_today).items():
            self._seed_call("PUT", f"/work-orders/{work_order_id}", body)

    def _start_pollers(self) -> None:
        """Lambda's SQS event sources of the template (the outbox queue -> the email worker)."""
        assert self.functions is not None
        for source in self.template.queue_sources():
            poller = QueuePoller(
                self.functions,
                self.template,
                source,
                endpoint_url=self.moto_url,
                out=self.out,
                retry_delay=self.config.retry_seconds,
            )
            self.pollers.append(poller.start())

    def _start_api(self) -> None:
        assert self.functions is not None
        self.api = LocalApiServer((HOST, self.config.api_port), self.template, self.functions)
        document = openapi_document(self.modules, self.api.url, project_version())
        self.api.pages.update(docs_pages(document))
        self.api.start()

    def stop(self) -> None:
        """Idempotent; frees every port (moto's stop() alone leaves its socket open)."""
        pollers, self.pollers = self.pollers, []
        for poller in pollers:
            poller.stop()
        api, self.api = self.api, None
        if api is not None:
            api.stop()
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            smtp.stop()
        moto, self.moto = self.moto, None
        if moto is not None:
            moto.stop()
            server = getattr(moto, "_server", None)
            if server is not None:
                server.server_close()
        if self.functions is not None:
            self.functions.clear_caches()
            reset_shared_clients()
        self.env.restore()


def start_stack(config: StackConfig | None = None, out: Callable[[str], None] = print) -> LocalStack:
    return LocalStack(config or StackConfig.from_env(), out=out).start()


def _curl(method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None) -> str:
    parts = ["curl -s"]
    if method != "GET":
        parts.append(f"-X {method}")
    parts.append(shlex.quote(url))
    for name, value in (headers or {}).items():
        parts.append(f"-H {shlex.quote(f'{name}: {value}')}")
    if body is not None:
        parts.append("-H 'content-type: application/json'")
        parts.append(f"-d {shlex.quote(json.dumps(body))}")
    return " ".join(parts)


def banner(stack: LocalStack) -> str:
    config, url = stack.config, stack.api_url
    settings = demo_settings(config)
    mine = {k: v for k, v in settings.items() if k not in ("timezone", "notify_email")}
    mine |= {"from_name": "Terry Tech", "from_email": "tech@demo.test"}
    wrong = mine | {
        "from_name": settings["from_name"],
        "from_email": settings["from_email"],
        "password": "wrong",
    }
    trust = (
        f"{stack.ca_bundle} (from your MAILER_EXTRA_CA_BUNDLE; add {stack.tls.ca if stack.tls else ''} "
        "to it, or test sends to the local SMTP server fail with category certificate)"
        if config.operator_ca_bundle
        else f"{stack.ca_bundle} (throwaway CA of this run)"
    )
    examples = [
        ("Provider presets", _curl("GET", f"{url}/providers")),
        (
            "The demo company's settings (password_set, never the password)",
            _curl("GET", f"{url}/settings/company"),
        ),
        (
            "Send a test message with them (it lands in the mail folder)",
            _curl("POST", f"{url}/settings/company/test", {"to": "you@demo.test"}),
        ),
        (
            "Save your own settings as another user (identity comes from the X-User-* headers)",
            _curl(
                "PUT", f"{url}/settings/me", mine, {"X-User-Id": "tech-1", "X-User-Email": "tech@demo.test"}
            ),
        ),
        (
            "Test unsaved settings with a wrong password -> ok: false, category auth_failed, a hint",
            _curl("POST", f"{url}/settings/test", wrong),
        ),
    ]
    lines = [
        "",
        "Company mail: local stack is running (Ctrl-C to stop)",
        "",
        f"  API            {url}",
        f"  Docs           {url}/docs",
        f"  OpenAPI        {url}/openapi.json",
        f"  SMTP server    {HOST}:{stack.smtp_port} with STARTTLS (certificate for localhost and {HOST}),",
        f"                 AUTH user {config.smtp_username} password {config.smtp_password}",
        f"  Mail folder    {config.mail_dir} (one .eml per message)",
        f"  Handlers trust {trust}",
        f"  moto (AWS)     {stack.moto_url}  e.g. aws --endpoint-url {stack.moto_url} dynamodb list-tables",
        "",
        f"  Identity: headers X-Tenant-Id, X-User-Id, X-User-Email, X-User-Groups (comma separated;"
        f" empty = no groups); default tenant {TENANT}, admin, admin@demo.test, groups admin.",
        "",
    ]
    for title, command in examples:
        lines += [f"  # {title}", f"  {command}", ""]
    lines += automated_email_help(stack)
    failed = stack.functions.import_errors if stack.functions else {}
    for logical, error in failed.items():
        effect = (
            "its routes answer 500"
            if logical in stack.functions.api_functions  # type: ignore[union-attr]
            else "its queue's messages fail until the dead-letter queue"
        )
        lines += [f"  !! {logical} failed to import ({effect}; traceback above): {error}"]
    return "\n".join(lines)


def automated_email_help(stack: LocalStack) -> list[str]:
    url, today = stack.api_url, stack.demo_today or demo_data.today_in()
    tomorrow, next_week = today + timedelta(days=1), today + timedelta(days=7)
    status = f"{url}/work-orders/WO-1001/status"
    examples = [
        (
            f'Today\'s noon reminder run, now -> {{"queued": {len(demo_data.REMINDED)}}}: '
            f"{', '.join(demo_data.REMINDED)} (run it again: 0)",
            _curl("POST", f"{url}/automations/reminder/run", {}),
        ),
        (
            f"The run of another day: {today + timedelta(days=6)} reminds WO-1004, on {next_week}",
            _curl(
                "POST", f"{url}/automations/reminder/run", {"date": (today + timedelta(days=6)).isoformat()}
            ),
        ),
        (
            "The technician is on the way -> the confirmation email",
            _curl("POST", status, {"status": "en_route"}),
        ),
        ("The job is done -> the thank-you email", _curl("POST", status, {"status": "completed"})),
        (
            "What was sent for WO-1001 (kind automation), and the work order (confirmation_status)",
            _curl("GET", f"{url}/emails?work_order_id=WO-1001")
            + "\n  "
            + _curl("GET", f"{url}/work-orders/WO-1001"),
        ),
        (
            "WO-1005's customer wants texts -> queued: false, with the reason",
            _curl("POST", f"{url}/work-orders/WO-1005/status", {"status": "en_route"}),
        ),
    ]
    lines = [
        "  Automated email: reminder, confirmation and thank-you are active for the demo company, with their",
        f"  default wording (GET/PUT {url}/automations/{{type}}). Work orders WO-1001..WO-1007-2 are synced",
        f"  around tomorrow, {tomorrow} ({demo_data.TIMEZONE}); nothing is sent until you ask:",
        "",
    ]
    for title, command in examples:
        lines += [f"  # {title}", f"  {command}", ""]
    lines += [
        f"  The emails land in {stack.mail_dir} (MAIL_DIR), one .eml each; this console prints a line per",
        "  message received and per outbox message the worker handled (failed ones come back after",
        f"  {stack.config.retry_seconds} s, and go to the dead-letter queue after the 5th try).",
        "",
    ]
    return lines


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    # Powertools warns when a handler adds no metric (every GET): noise on a developer's console.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    try:
        config = StackConfig.from_env()
        stack = start_stack(config, out=lambda line: print(line, flush=True))
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"The local stack could not start: {exc}", file=sys.stderr)
        return 1
    print(banner(stack), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop()
        print("Local stack stopped.", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
