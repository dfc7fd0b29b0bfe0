"""End-to-end tests run the real local stack, which points boto3 at its own moto server."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_aws() -> None:
    """Replaces the suite-wide isolation, which removes AWS_ENDPOINT_URL and forgets cached clients.

    The stack sets the endpoint, fake credentials and region for the process itself (and puts the
    previous values back when it stops), so nothing here can reach a real AWS account.
    """
