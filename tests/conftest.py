"""Shared fixtures: AWS on moto with the template's tables, handlers as Lambda runs them, TLS material,
loopback SMTP servers and the outbox. Each is a thin wrapper over tests/support."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import trustme

from local.smtp_server import LocalSmtpServer
from local.template import Template
from mailer.delivery import guard
from mailer.settings import checks
from tests.support.api import Api, cold_start
from tests.support.aws import isolate_from_aws, set_function_environment, template_on_moto
from tests.support.dns import offline_resolver
from tests.support.outbox import Outbox
from tests.support.smtp import Script, ScriptedServer, Servers, start_smtp_server
from tests.support.tls import server_context, write_ca_bundle


@pytest.fixture(autouse=True)
def _isolated_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach a real AWS account; Powertools quiet and deterministic."""
    isolate_from_aws(monkeypatch)


@pytest.fixture(autouse=True)
def _offline_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sends a DNS query off this machine: the address guard resolves names with
    tests.support.dns, and the checks of a test send have no system resolver (a test that wants their
    answers points MAILER_DNS_SERVERS at a DNS server on loopback, tests.support.dns_server)."""
    monkeypatch.setattr(guard, "resolver", offline_resolver)
    monkeypatch.setattr(checks, "_system_servers", list)


@pytest.fixture
def template() -> Template:
    return Template()


@pytest.fixture
def aws(template: Template) -> Iterator[boto3.Session]:
    """moto with every table, queue and bucket of template.yaml."""
    with template_on_moto(template) as session:
        yield session


@pytest.fixture
def function_env(template: Template, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the template gives the functions, as Lambda sets them before the cold start."""
    set_function_environment(template, monkeypatch)


@pytest.fixture
def api(aws: boto3.Session, template: Template, function_env: None) -> Api:
    # Each function is a warm container for the length of one test: caches live across calls.
    cold_start(template)
    return Api(template)


@pytest.fixture
def outbox(api: Api, aws: boto3.Session, template: Template) -> Iterator[Outbox]:
    """The worker fed from the outbox queue: a cold container, and none left warm for the next test."""
    box = Outbox(aws, template)
    yield box
    box.close()


@pytest.fixture
def plans(api: Api, aws: boto3.Session, template: Template) -> Iterator[Outbox]:
    """The company planner fed from the plan queue the schedule tick fills."""
    box = Outbox(aws, template, queue="PlanQueue", function="CompanyPlannerFunction")
    yield box
    box.close()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    return server_context(ca, "localhost", "127.0.0.1")


@pytest.fixture(scope="session")
def ca_bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_ca_bundle(ca, tmp_path_factory.mktemp("ca") / "ca.pem")


@pytest.fixture
def trust_local_ca(ca_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Handlers trust the throwaway CA, as an operator would with MAILER_EXTRA_CA_BUNDLE."""
    monkeypatch.setenv("MAILER_EXTRA_CA_BUNDLE", str(ca_bundle))
    return ca_bundle


@pytest.fixture
def smtp_server(server_tls: ssl.SSLContext) -> Iterator[Callable[..., LocalSmtpServer]]:
    """Factory for real loopback SMTP servers; every one started is stopped after the test."""
    servers = Servers()

    def start(mode: str = "starttls", **options: Any) -> LocalSmtpServer:
        return servers.keep(start_smtp_server(server_tls, mode, **options))

    yield start
    servers.stop_all()


@pytest.fixture
def scripted_server() -> Iterator[Callable[[Script], ScriptedServer]]:
    """Factory for ScriptedServer (misbehaving below SMTP); every one started is stopped after the test."""
    servers = Servers()

    def start(script: Script) -> ScriptedServer:
        return servers.keep(ScriptedServer(script).start())

    yield start
    servers.stop_all()
