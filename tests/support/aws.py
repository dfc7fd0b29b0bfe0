"""AWS for tests: never a real account, moto with the template's resources, the functions' environment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest
from moto import mock_aws

from local.template import Template
from mailer.dal import clients as aws_clients
from mailer.delivery.tls import client_context

REGION = "us-east-1"


def isolate_from_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Never reach a real AWS account; Powertools quiet and deterministic; no client cached from before."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "CompanyMailTests")
    monkeypatch.setenv("POWERTOOLS_DEV", "false")
    aws_clients.reset()
    client_context.cache_clear()


@contextmanager
def template_on_moto(template: Template) -> Iterator[boto3.Session]:
    """moto with every table, queue and bucket of template.yaml."""
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        template.create_all(session)
        aws_clients.reset()
        yield session
    aws_clients.reset()


LOOPBACK_NETWORKS = "127.0.0.1/32,::1/128"


def set_function_environment(template: Template, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables the template gives the functions, as Lambda sets them before the cold start."""
    for logical in template.functions():
        for key, value in template.function_environment(logical).items():
            if key != "POWERTOOLS_SERVICE_NAME":
                monkeypatch.setenv(key, value)
    # The tests' mail servers listen on loopback, which the address guard admits only when told.
    monkeypatch.setenv("MAILER_ALLOWED_NETWORKS", LOOPBACK_NETWORKS)
