"""Fixtures of the fault suite. The servers, the outbox and the SMTP helpers are those of tests/support,
shared with tests/integration."""

from __future__ import annotations

import pytest

from tests.support.faults import AwsFaults


@pytest.fixture
def aws_faults(monkeypatch: pytest.MonkeyPatch) -> AwsFaults:
    return AwsFaults(monkeypatch)
