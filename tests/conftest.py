"""Shared fixtures: AWS on moto with the template's tables, handlers as Lambda runs them, TLS material."""

from __future__ import annotations

import importlib.util
import json
import ssl
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import trustme
from moto import mock_aws

from local.events import ADMIN, FakeContext, HttpRequest, Identity, http_event
from local.template import Template
from mailer.dal import clients as aws_clients
from mailer.delivery.tls import client_context

_loaded: dict[str, ModuleType] = {}


@pytest.fixture(autouse=True)
def _isolated_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach a real AWS account; Powertools quiet and deterministic."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "CompanyMailTests")
    monkeypatch.setenv("POWERTOOLS_DEV", "false")
    aws_clients.reset()
    client_context.cache_clear()


@pytest.fixture
def template() -> Template:
    return Template()


@pytest.fixture
def aws(template: Template) -> Iterator[boto3.Session]:
    """moto with every table, queue and bucket of template.yaml."""
    with mock_aws():
        session = boto3.Session(region_name="us-east-1")
        template.create_all(session)
        aws_clients.reset()
        yield session
    aws_clients.reset()


def load_function(template: Template, logical_id: str) -> ModuleType:
    """Import a function's handler module from its CodeUri under a name of its own."""
    if logical_id not in _loaded:
        path, _ = template.handler_path(logical_id)
        spec = importlib.util.spec_from_file_location(f"fn_{logical_id}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        _loaded[logical_id] = module
    return _loaded[logical_id]


class Api:
    """Calls the template's routes as API Gateway would: finds the function, builds a v2 event."""

    def __init__(self, template: Template) -> None:
        self.template = template

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        identity: Identity | None = ADMIN,
        raw_body: str | bytes | None = None,
        query: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        for route in self.template.routes():
            match = route.pattern.match(path)
            if route.method == method and match:
                break
        else:
            raise AssertionError(f"template.yaml has no route for {method} {path}")
        module = load_function(self.template, route.function)
        request = HttpRequest(
            method=method,
            path=path,
            route=route.path,
            path_parameters=match.groupdict(),
            query=query or {},
            body=raw_body if raw_body is not None else (None if body is None else json.dumps(body)),
        )
        response = module.lambda_handler(http_event(request, identity), FakeContext())
        text = response.get("body") or ""
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        parsed = json.loads(text) if text and "json" in headers.get("content-type", "") else text
        return response["statusCode"], parsed, headers


@pytest.fixture
def function_env(template: Template, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the template gives the functions, as Lambda sets them before the cold start."""
    for logical in template.functions():
        for key, value in template.function_environment(logical).items():
            if key != "POWERTOOLS_SERVICE_NAME":
                monkeypatch.setenv(key, value)


@pytest.fixture
def api(aws: boto3.Session, template: Template, function_env: None) -> Api:
    # Each function is a warm container for the length of one test: caches live across calls.
    for logical in template.functions():
        load_function(template, logical).services.cache_clear()
    return Api(template)


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def ca_bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def trust_local_ca(ca_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Handlers trust the throwaway CA, as an operator would with MAILER_EXTRA_CA_BUNDLE."""
    monkeypatch.setenv("MAILER_EXTRA_CA_BUNDLE", str(ca_bundle))
    return ca_bundle


@pytest.fixture
def smtp_server(server_tls: ssl.SSLContext) -> Iterator[Callable[..., Any]]:
    """Factory for real loopback SMTP servers; every one started is stopped after the test."""
    from local.smtp_server import LocalSmtpServer

    started: list[LocalSmtpServer] = []

    def start(mode: str = "starttls", **options: Any) -> LocalSmtpServer:
        if mode != "plain":
            options.setdefault("server_context", server_tls)
        server = LocalSmtpServer(mode=mode, **options).start()  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
