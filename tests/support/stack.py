"""The local stack (make run) for end-to-end tests: free ports and temporary folders, stopped after use."""

from __future__ import annotations

import shlex
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
        imap_port=free_port(),
        imap_starttls_port=free_port(),
        dns_port=free_port(),
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


def banner_commands(text: str, heading: str, until: str | None = None) -> list[list[str]]:
    """The banner's curl commands under `heading` (up to `until`), each split as a shell would."""
    section = text.split(heading, 1)[1]
    if until is not None:
        section = section.split(until, 1)[0]
    return [shlex.split(line.strip()) for line in section.splitlines() if line.strip().startswith("curl ")]


def run_curl(command: list[str]) -> requests.Response:
    """A banner curl command (`curl -s [-X METHOD] URL [-H ...] [-d BODY]`) made with requests."""
    method = command[command.index("-X") + 1] if "-X" in command else "GET"
    url = next(part for part in command if part.startswith("http://"))
    body = command[command.index("-d") + 1] if "-d" in command else None
    headers = {"content-type": "application/json"} if body is not None else {}
    return requests.request(method, url, data=body, headers=headers, timeout=30)
