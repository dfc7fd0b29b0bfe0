"""Fixtures of the integration tests that run handlers in processes of their own."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from local.template import Template
from tests.support.api import Api, cold_start
from tests.support.processes import moto_server


@pytest.fixture
def shared_api(template: Template, function_env: None, trust_local_ca: object) -> Iterator[Api]:
    """The API in this process against one moto server that handler processes reach too."""
    with moto_server(template):
        cold_start(template)
        yield Api(template)
    cold_start(template)
