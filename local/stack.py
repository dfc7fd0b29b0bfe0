"""The local stack in this process: moto, the SMTP server, the DNS server, the handlers, the queue
pollers, the API, and the API's worker processes (local.api_pool).

`start_stack()` starts it (tests use it directly); `LocalStack.stop()` frees every port and puts the
environment back.
"""

from __future__ import annotations

import os
import threading
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import ModuleType

import boto3
import requests
from moto.server import ThreadedMotoServer

from local.api_pool import ApiProcessPool
from local.bounce_back import bounce_back, chain
from local.console import print_message, quiet_logs
from local.dns_server import LocalDnsServer
from local.handlers import Functions, add_layers_to_path, reset_shared_clients, shared_environment
from local.http_server import LocalApiServer
from local.imap_server import ImapServer, start_imap_server
from local.lambda_log import LambdaLog
from local.openapi import docs_pages, openapi_document
from local.outbox_poller import QueuePoller
from local.provider_mail import record_deliveries
from local.providers import Providers
from local.seed import FROM_EMAIL, seed_demo_tenant
from local.smtp_server import LocalSmtpServer
from local.stack_config import HOST, EnvOverlay, StackConfig, ensure_free
from local.template import ROOT, Template
from local.tls_files import TlsFiles, make_tls

LOCAL_ACCOUNT = "billing@demo.test"  # the account the local Microsoft and Google sign-in pages consent as
DEMO_DOMAIN = FROM_EMAIL.rpartition("@")[2]
# What the local DNS server publishes: an SPF record for the demo domain that covers the local SMTP
# server, and no DMARC record, so the test send of the demo settings shows the dmarc warning.
DEMO_ZONE = {DEMO_DOMAIN: ["v=spf1 ip4:127.0.0.1 ~all"]}
OAUTH_VARIABLES = (
    "MAILER_ALLOWED_NETWORKS",
    "OAUTH_REDIRECT_URL",
    "OAUTH_ALLOWED_ORIGINS",
    "OAUTH_MICROSOFT_CLIENT_ID",
    "OAUTH_MICROSOFT_CLIENT_SECRET",
    "OAUTH_MICROSOFT_AUTHORIZE_URL",
    "OAUTH_MICROSOFT_TOKEN_URL",
    "MICROSOFT_GRAPH_URL",
    "OAUTH_MICROSOFT_SMTP",
    "OAUTH_GOOGLE_CLIENT_ID",
    "OAUTH_GOOGLE_CLIENT_SECRET",
    "OAUTH_GOOGLE_AUTHORIZE_URL",
    "OAUTH_GOOGLE_TOKEN_URL",
    "OAUTH_GOOGLE_REVOKE_URL",
    "OAUTH_GOOGLE_USERINFO_URL",
    "GMAIL_API_URL",
    "OAUTH_GOOGLE_SMTP",
)


def project_version() -> str:
    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])


@dataclass
class LocalStack:
    config: StackConfig
    out: Callable[[str], None] = print
    template: Template = field(default_factory=Template)
    env: EnvOverlay = field(default_factory=EnvOverlay)
    moto: ThreadedMotoServer | None = None
    smtp: LocalSmtpServer | None = None
    imap: ImapServer | None = None  # Dovecot: the demo account's mailbox, where bounce reports arrive
    dns: LocalDnsServer | None = None  # the resolver of the test send's SPF and DMARC checks
    bounce_timer: threading.Event = field(default_factory=threading.Event)
    api: LocalApiServer | None = None
    api_pool: ApiProcessPool | None = None  # the processes the API's requests run in
    pollers: list[QueuePoller] = field(default_factory=list)
    functions: Functions | None = None
    tls: TlsFiles | None = None
    providers: Providers | None = None  # local Microsoft and Google: sign-in, Graph, Gmail, XOAUTH2 SMTP
    oauth_env: dict[str, str] = field(default_factory=dict)  # where the handlers find them
    lambda_log: LambdaLog | None = None  # the handlers' JSON output, when config.lambda_log is set
    modules: dict[str, ModuleType] = field(default_factory=dict)
    moto_url: str = ""
    ca_bundle: str = ""
    demo_today: date | None = None  # the day the demo work orders were placed around
    demo_uploads: dict[str, str] = field(default_factory=dict)  # file name -> upload id

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
        given = {k: v for k, v in os.environ.items() if k in OAUTH_VARIABLES and v}  # before any overlay
        try:
            self._start_moto()
            self.tls = make_tls(self.config.tls_dir)
            self._start_smtp()
            self._start_dns()
            self._start_providers(given)
            self._load_functions()
            self._seed()
            self._start_pollers()
            if self.api_pool is not None:
                self.api_pool.wait_ready()  # up means the API answers at once: no request before it
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
            ("IMAP_PORT", self.config.imap_port),
            ("IMAP_STARTTLS_PORT", self.config.imap_starttls_port),
        ):
            ensure_free(name, port)
        ensure_free("DNS_PORT", self.config.dns_port, udp=True)
        quiet_logs()
        self.moto = ThreadedMotoServer(ip_address=HOST, port=self.config.moto_port, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.moto_url = f"http://{host}:{port}"
        self.env.point_aws_at(self.moto_url)
        # moto keeps its state per process: a stack started again here must not see the last one's.
        requests.post(f"{self.moto_url}/moto-api/reset", timeout=10).raise_for_status()
        self.template.create_all(boto3.Session())

    def _start_smtp(self) -> None:
        assert self.tls is not None
        users = {self.config.smtp_username: self.config.smtp_password}
        self.config.tls_dir.mkdir(parents=True, exist_ok=True)
        self.imap = start_imap_server(
            self.config.tls_dir,
            users=users,
            tokens={},
            ca=self.tls.authority,
            ports=(self.config.imap_starttls_port, self.config.imap_port),
        )
        self.smtp = LocalSmtpServer(
            mode="starttls",
            host=HOST,
            port=self.config.smtp_port,
            server_context=self.tls.server_context,
            users={self.config.smtp_username: self.config.smtp_password},
            mail_dir=self.config.mail_dir,
            on_message=chain(print_message(self.out), bounce_back(self.imap, users)),
        ).start()

    def _start_dns(self) -> None:
        self.dns = LocalDnsServer(DEMO_ZONE, port=self.config.dns_port).start()

    def _start_providers(self, given: dict[str, str]) -> None:
        """Loopback servers shaped like Microsoft's and Google's, unless the environment names others:
        a variable set before `make run` wins over the local endpoint."""
        assert self.tls is not None
        self.providers = Providers(smtp_context=self.tls.server_context, account=LOCAL_ACCOUNT).start()
        record_deliveries(self.providers, self.config.mail_dir, self.out)
        local = self.providers.env() | self.providers.client_env()
        local["MAILER_ALLOWED_NETWORKS"] = "127.0.0.1/32,::1/128"  # the local mail servers are loopback
        local["PUBLIC_API_URL"] = f"http://{HOST}:{self.config.api_port}"  # where open pixels point
        assert self.dns is not None
        local["MAILER_DNS_SERVERS"] = self.dns.servers  # the test send's SPF and DMARC lookups
        local["OAUTH_REDIRECT_URL"] = f"http://{HOST}:{self.config.api_port}/oauth/callback"
        local["OAUTH_ALLOWED_ORIGINS"] = (
            f"http://{HOST}:{self.config.api_port},http://localhost:{self.config.api_port}"
        )
        self.oauth_env = local | given

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
            | self.oauth_env
        )
        add_layers_to_path(self.template)
        reset_shared_clients()
        self.functions = Functions(self.template)
        if self.config.lambda_log is not None:
            self.lambda_log = LambdaLog(self.config.lambda_log, self.out).start()
        if self.config.api_workers:  # its first process imports the functions meanwhile
            self.api_pool = ApiProcessPool(
                self.config.api_workers,
                self.functions.api_handlers(),
                on_import_error=self.functions.record_import_error,
            ).start()
        self.modules = self.functions.load_all()
        self.functions.pool = self.api_pool
        if self.lambda_log is not None:
            self.lambda_log.attach()  # the Loggers made by the imports above

    def _seed(self) -> None:
        assert self.functions is not None
        seeded = seed_demo_tenant(self.functions, self.template, self.config)
        self.demo_today, self.demo_uploads = seeded.today, seeded.uploads

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
        if self.lambda_log is not None:
            self.lambda_log.attach()  # a poller imports its function when it starts
        threading.Thread(target=self._read_bounces, name="bounce-reader", daemon=True).start()

    def _read_bounces(self) -> None:
        """The bounce reader's schedule, every few seconds here."""
        while not self.bounce_timer.wait(self.config.bounce_seconds):
            if self.functions is None:
                return
            try:
                self.functions.invoke_here("BounceReaderFunction", {})
            except Exception as exc:  # noqa: BLE001 - the next run tries again
                self.out(f"bounce reader: {exc}")

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
        api_pool, self.api_pool = self.api_pool, None
        if self.functions is not None:
            self.functions.pool = None
        if api_pool is not None:
            api_pool.stop()
        self.bounce_timer.set()
        smtp, self.smtp = self.smtp, None
        if smtp is not None:
            smtp.stop()
        imap, self.imap = self.imap, None
        if imap is not None:
            imap.stop()
        dns, self.dns = self.dns, None
        if dns is not None:
            dns.stop()
        providers, self.providers = self.providers, None
        if providers is not None:
            providers.stop()
        moto, self.moto = self.moto, None
        if moto is not None:
            moto.stop()
            server = getattr(moto, "_server", None)
            if server is not None:
                server.server_close()
        if self.functions is not None:
            self.functions.clear_caches()
            reset_shared_clients()
        lambda_log, self.lambda_log = self.lambda_log, None
        if lambda_log is not None:
            lambda_log.stop()
        self.env.restore()


def start_stack(config: StackConfig | None = None, out: Callable[[str], None] = print) -> LocalStack:
    return LocalStack(config or StackConfig.from_env(), out=out).start()
