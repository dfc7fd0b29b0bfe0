"""The local stack (make run) for end-to-end tests: free ports and temporary folders, stopped after use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import requests

from local.smtp_server import free_port
from local.stack import LocalStack, start_stack
from local.stack_config import StackConfig


def stack_config(tmp: Path) -> StackConfig:
    """A stack on free ports, its mail and TLS folders under `tmp`."""
    return StackConfig(
        api_port=free_port(),
        smtp_port=free_port(),
        moto_port=free_port(),
        mail_dir=tmp / "mail",
        tls_dir=tmp / "tls",
    )


def quiet(line: str) -> None:
    """A console that prints nothing."""


@contextmanager
def running_stack(tmp: Path, out: Callable[[str], None] = quiet) -> Iterator[LocalStack]:
    """One stack in this process; moto's state is per process, so no other stack may run meanwhile."""
    stack = start_stack(stack_config(tmp), out=out)
    try:
        yield stack
    finally:
        stack.stop()


@contextmanager
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
