"""Handlers in processes of their own against one moto server: concurrency as Lambda runs it.

Lambda runs concurrent requests in separate containers. They are separate processes that share
nothing but AWS, so a race between two requests (two sends under one Idempotency-Key, two status
changes of one work order) shows only when each runs in its own process against one AWS.

- `moto_server(template)` starts a `ThreadedMotoServer` on 127.0.0.1 with the template's tables,
  queues and buckets, and points this process's boto3 at it. Setup made here, through
  `tests.support.api.Api` (settings saved, files uploaded), lands where the other processes see it.
  Tests that use it must not use the `aws` fixture (moto in memory, in this process only).
  DynamoDB applies each request atomically, a conditional write included; moto's server runs
  requests on threads without a lock, so while it runs its DynamoDB requests run one at a time.
- `Invocations(template)` runs a function's handler once per request, each in a fresh process
  (`spawn`), as a cold container would. Every process imports the handler first; `start()` then
  releases them at the same moment. `answers()` gives each one's (status, body, headers), in the
  order added. `kill()` ends one mid-request, as a crashed or timed-out Lambda ends.

The processes inherit this process's environment as it is when they start: the functions'
variables (the `function_env` fixture), the extra CA bundle, and boto3 pointed at the moto server.
Their address guard resolves names offline, as the suite's does (tests.support.dns), and the checks
of a test send have no system resolver (tests/conftest.py).
"""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.synchronize
import queue
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

import boto3
import requests
from moto.dynamodb.responses import DynamoHandler
from moto.server import ThreadedMotoServer

from local.events import ADMIN, FakeContext, HttpRequest, Identity, http_event
from local.http_server import match_route
from local.smtp_server import free_port
from local.stack_config import HOST, EnvOverlay
from local.template import Template
from mailer.dal import clients as aws_clients

Answer = tuple[int, Any, dict[str, str]]  # status, body (parsed when JSON), headers in lower case
LOAD_TIMEOUT = 60.0  # seconds for a fresh process to import a handler (boto3, Powertools, the layer)


@contextmanager
def dynamodb_one_request_at_a_time() -> Iterator[None]:
    lock = threading.Lock()
    original = DynamoHandler.call_action

    def call_action(self: DynamoHandler) -> Any:
        with lock:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]
    try:
        yield
    finally:
        DynamoHandler.call_action = original  # type: ignore[method-assign]


@contextmanager
def moto_server(template: Template) -> Iterator[str]:
    """A moto server on a free loopback port with every resource of template.yaml; its URL.

    moto keeps its state per process, shared with `mock_aws`: it is reset before and after.
    """
    with dynamodb_one_request_at_a_time():
        server = ThreadedMotoServer(ip_address=HOST, port=free_port(), verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        env = EnvOverlay()
        try:
            requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
            env.point_aws_at(url)
            aws_clients.reset()
            template.create_all(boto3.Session())
            yield url
        finally:
            env.restore()
            aws_clients.reset()
            try:
                requests.post(f"{url}/moto-api/reset", timeout=10)
            finally:
                server.stop()
                listening = getattr(server, "_server", None)
                if listening is not None:
                    listening.server_close()  # stop() alone leaves the port bound


@dataclass
class SlowContext(FakeContext):
    """A Lambda context whose invocation times out `remaining_ms` after it is made, counting down."""

    remaining_ms: int = 30_000
    started: float = field(default_factory=time.monotonic)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.remaining_ms - int((time.monotonic() - self.started) * 1000))


def request_event(
    template: Template,
    method: str,
    path: str,
    body: Any = None,
    *,
    identity: Identity | None = ADMIN,
    headers: dict[str, str] | None = None,
) -> tuple[str, dict[str, Any]]:
    """The function serving `method path` and the API Gateway event it gets, as `Api.call` sends it."""
    match = match_route(template.routes(), method, path)
    if match.route is None:
        raise AssertionError(f"template.yaml has no route for {method} {path}")
    request = HttpRequest(
        method=method,
        path=path,
        route=match.route.path,
        path_parameters=match.path_parameters,
        headers=headers or {},
        body=None if body is None else json.dumps(body),
    )
    return match.route.function, http_event(request, identity)


def answer_of(response: dict[str, Any]) -> Answer:
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    text = response.get("body") or ""
    parsed = json.loads(text) if text and "json" in headers.get("content-type", "") else text
    return response["statusCode"], parsed, headers


def _invoke(
    logical_id: str,
    event: dict[str, Any],
    remaining_ms: int,
    ready: multiprocessing.synchronize.Event,
    go: multiprocessing.synchronize.Event,
    answers: multiprocessing.Queue[tuple[int, str, Any]],
    index: int,
) -> None:
    """A spawned process's work: import the handler, say so, wait for the start, invoke it once."""
    try:
        from mailer.delivery import guard
        from mailer.settings import checks
        from tests.support.api import load_function
        from tests.support.dns import offline_resolver

        guard.resolver = offline_resolver
        checks._system_servers = list  # as tests/conftest.py: no query to the system's resolvers
        module = load_function(Template(), logical_id)
        ready.set()
        if not go.wait(LOAD_TIMEOUT):
            raise TimeoutError("never released")
        context = SlowContext(function_name=logical_id, remaining_ms=remaining_ms)
        answers.put((index, "answer", module.lambda_handler(event, context)))
    except BaseException:  # noqa: BLE001 - reported to the test, which fails with it
        answers.put((index, "error", traceback.format_exc()))
        ready.set()


class Invocations:
    """Handler invocations, one spawned process each, released together; a context manager that
    kills whatever is still running when it is left."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self._mp = multiprocessing.get_context("spawn")
        self._go = self._mp.Event()
        self._answers: multiprocessing.Queue[tuple[int, str, Any]] = self._mp.Queue()
        self._ready: list[multiprocessing.synchronize.Event] = []
        self.processes: list[BaseProcess] = []
        self._found: dict[int, Answer] = {}

    def add(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        identity: Identity | None = ADMIN,
        headers: dict[str, str] | None = None,
        remaining_ms: int = 30_000,
    ) -> int:
        """One more request to run; its index in `answers()`. `remaining_ms`: its Lambda timeout."""
        logical_id, event = request_event(
            self.template, method, path, body, identity=identity, headers=headers
        )
        index = len(self.processes)
        ready = self._mp.Event()
        process = self._mp.Process(
            target=_invoke,
            args=(logical_id, event, remaining_ms, ready, self._go, self._answers, index),
            name=f"{logical_id}-{index}",
            daemon=True,
        )
        self._ready.append(ready)
        self.processes.append(process)
        return index

    def start(self) -> None:
        """Start every process, wait until each has imported its handler, then release them all."""
        for process in self.processes:
            process.start()
        for ready in self._ready:
            if not ready.wait(LOAD_TIMEOUT):
                raise TimeoutError("a handler process did not get ready")
        self._go.set()

    def answers(self, *, of: list[int] | None = None, timeout: float = 60.0) -> list[Answer]:
        """The answers of the requests `of` (default: all), in that order; raises what a process raised."""
        wanted = list(range(len(self.processes))) if of is None else of
        deadline = time.monotonic() + timeout
        while not all(i in self._found for i in wanted):
            try:
                index, kind, value = self._answers.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError("a handler process did not answer") from None
            if kind == "error":
                raise AssertionError(f"handler process {index} failed:\n{value}")
            self._found[index] = answer_of(value)
        return [self._found[i] for i in wanted]

    def kill(self, index: int) -> None:
        """End one process at once (SIGKILL), as Lambda ends an invocation that times out."""
        process = self.processes[index]
        process.kill()
        process.join(10)

    def close(self) -> None:
        for process in self.processes:
            if process.is_alive():
                process.kill()
            process.join(10)
        self._answers.close()

    def __enter__(self) -> Invocations:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
