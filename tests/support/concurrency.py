"""Requests made at the same moment by separate processes, each a Lambda container of its own.

`shared_moto` starts one moto server on 127.0.0.1 in the test process, with every table, queue and
bucket of template.yaml, as `make run` does. `call_together` starts N processes (multiprocessing
`spawn`: a fresh interpreter each, with the environment it is given and no state of this process).
Each loads the route's function as Lambda would (tests.support.api), warms it up, waits at a
barrier with the others, and then invokes the handler, round after round. The answers come back
per round, in process order.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import boto3
import requests

from local.smtp_server import free_port
from local.template import Template
from tests.support.aws import REGION
from tests.support.processes import dynamodb_one_request_at_a_time

HOST = "127.0.0.1"
START_SECONDS = 120  # spawning and importing the handler, on a busy machine


@dataclass(frozen=True)
class SharedMoto:
    url: str
    session: Any  # clients and resources of this process, made for `url` whatever the environment


@contextmanager
def shared_moto(template: Template) -> Iterator[SharedMoto]:
    """One moto server that every process reaches at `url`, with the template's resources."""
    from moto.server import ThreadedMotoServer

    werkzeug = logging.getLogger("werkzeug")  # moto's server: one line per AWS call
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    # DynamoDB applies a conditional write atomically; moto's threaded server does not, unless its
    # DynamoDB requests run one at a time.
    serialized = dynamodb_one_request_at_a_time()
    serialized.__enter__()
    server = ThreadedMotoServer(ip_address=HOST, port=free_port(), verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        # moto keeps its state per process: nothing from an earlier test may show through.
        requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
        session = _EndpointSession(boto3.Session(region_name=REGION), url)
        template.create_all(session)
        yield SharedMoto(url=url, session=session)
    finally:
        server.stop()
        serialized.__exit__(None, None, None)
        werkzeug.setLevel(level)


class _EndpointSession:
    """A boto3 session whose clients and resources all go to `url`, whatever the environment says."""

    def __init__(self, session: boto3.Session, url: str) -> None:
        self._session, self._url = session, url

    def client(self, service: str, **kwargs: Any) -> Any:
        return self._session.client(service, endpoint_url=self._url, **kwargs)

    def resource(self, service: str, **kwargs: Any) -> Any:
        return self._session.resource(service, endpoint_url=self._url, **kwargs)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Any = None


@dataclass(frozen=True)
class Answer:
    process: int
    status: int
    body: Any


def call_together(
    processes: int,
    rounds: Sequence[Request],
    environment: Mapping[str, str],
    *,
    warm_up: Request | None = None,
    timeout: float = START_SECONDS,
) -> list[list[Answer]]:
    """`processes` processes make each request of `rounds` at once (a barrier before each round).

    `environment` is the whole environment of each process (the functions' variables and
    AWS_ENDPOINT_URL). `warm_up` is called once by each process before the first barrier, so the
    requests that race are those of warm containers. Returns the answers of each round, in
    process order."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(processes, timeout=timeout)
    reports = context.Queue()
    workers = [
        context.Process(
            target=_container,
            args=(n, barrier, reports, dict(environment), warm_up, list(rounds)),
            name=f"container-{n}",
            daemon=True,
        )
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    received: dict[int, list[Answer] | str] = {}
    try:
        while len(received) < processes:
            n, report = reports.get(timeout=timeout * (1 + len(rounds)))
            received[n] = report
    except queue.Empty:
        raise AssertionError(f"only {len(received)} of {processes} processes reported") from None
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()
                worker.join()
    errors = [report for report in received.values() if isinstance(report, str)]
    assert not errors, "\n".join(errors)
    return [[received[n][r] for n in range(processes)] for r in range(len(rounds))]  # type: ignore[index]


def _container(
    n: int,
    barrier: Any,
    reports: Any,
    environment: dict[str, str],
    warm_up: Request | None,
    rounds: list[Request],
) -> None:
    """One container: its environment, its handler, then the rounds, each begun with the others.
    Reports once: its answers, or what went wrong."""
    os.environ.clear()
    os.environ.update(environment)
    answers: list[Answer] = []
    try:
        from tests.support.api import Api

        api = Api(Template())
        if warm_up is not None:
            api.call(warm_up.method, warm_up.path, warm_up.body)
        for request in rounds:
            barrier.wait()
            status, body, _ = api.call(request.method, request.path, request.body)
            answers.append(Answer(process=n, status=status, body=body))
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails with it
        barrier.abort()  # the others stop waiting for this one
        reports.put((n, f"container {n}, after {len(answers)} rounds: {exc!r}"))
        return
    reports.put((n, answers))
