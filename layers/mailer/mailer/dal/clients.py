"""boto3 clients and resources, made once per container and lazily (so tests can start moto first)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=10)


def client(service: str, region: str | None = None) -> Any:
    return _client(service, region)


@cache
def _client(service: str, region: str | None) -> Any:
    return boto3.client(service, region_name=region, config=_CONFIG)


@cache
def dynamodb_table(name: str) -> Any:
    return boto3.resource("dynamodb", config=_CONFIG).Table(name)


def reset() -> None:
    """Forget cached clients (tests switch moto on and off between cases)."""
    _client.cache_clear()
    dynamodb_table.cache_clear()
