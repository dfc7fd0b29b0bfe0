"""Fixtures of the fault suite.

The misbehaving SMTP servers are those of tests/integration (misbehaving_smtp.ScriptedServer,
test_smtp_transport.ScriptedHandler), and the worker is fed SQS events by test_automated_email's
`Outbox`. pytest imports those modules by base name (rootdir-relative, no __init__.py) after putting
their folder on sys.path; doing the same here shares the very same modules, nothing is copied.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

INTEGRATION = str(Path(__file__).resolve().parents[1] / "integration")
if INTEGRATION not in sys.path:
    sys.path.insert(0, INTEGRATION)

from fault_helpers import AwsFaults  # noqa: E402
from misbehaving_smtp import Script, ScriptedServer  # noqa: E402


@pytest.fixture
def scripted_server() -> Iterator[Callable[[Script], ScriptedServer]]:
    """Factory for misbehaving_smtp.ScriptedServer; every one started is stopped after the test."""
    started: list[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        server = ScriptedServer(script).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def aws_faults(monkeypatch: pytest.MonkeyPatch) -> AwsFaults:
    return AwsFaults(monkeypatch)
