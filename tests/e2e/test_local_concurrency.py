"""The local API serves requests at the same time, as API Gateway does with Lambda containers.

On the stack: a test-send held open in DATA by an SMTP server the test controls leaves the API
answering, and two held sends are both inside DATA at once. On the pool itself (local.api_pool),
with small handlers written for the test: a process takes one invocation at a time, the workers'
output reaches the Lambda log, they resolve names with this process's resolver, and a worker that
exits or a function that fails to import is handled as Lambda handles it.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from local.api_pool import ApiProcessPool, HandlerRaised, MirrorError, WorkerExited
from local.handlers import FunctionImportError
from local.lambda_log import LambdaLog
from local.seed import demo_settings
from local.smtp_server import LocalSmtpServer, RecordingHandler
from local.stack import LocalStack, start_stack
from local.stack_config import StackConfig
from mailer.delivery import guard
from tests.support.leaks import no_leaks
from tests.support.stack import running_stack, stack_config

HOLD_LIMIT = 12.0  # a held DATA is let go after this even if the test never releases it (< SMTP timeout)
WAIT = 30.0  # for something that happens within a second or two, on a slow machine


class HeldData(RecordingHandler):
    """Accepts every message, but keeps each DATA open until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.port = 0
        self.inside = 0  # sessions in DATA now
        self._changed = threading.Condition()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._changed:
            self.inside += 1
            self._changed.notify_all()
        try:
            await asyncio.to_thread(self.release.wait, HOLD_LIMIT)
            return await super().handle_DATA(server, session, envelope)
        finally:
            with self._changed:
                self.inside -= 1
                self._changed.notify_all()

    def wait_inside(self, count: int) -> bool:
        """Whether `count` sessions are in DATA at once (before the timeout)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.inside >= count, WAIT)


@pytest.fixture(scope="class")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One stack for the class, stopped before the next test starts one of its own (moto's state is
    per process)."""
    with running_stack(tmp_path_factory.mktemp("concurrency")) as stack:
        assert stack.api_pool is not None and stack.api_pool.size >= 2
        stack.api_pool.wait_ready()
        yield stack


@pytest.fixture
def held(stack: LocalStack) -> Iterator[HeldData]:
    """A STARTTLS server with the demo account, keeping DATA open; the company settings point at it."""
    assert stack.tls is not None
    handler = HeldData()
    config = stack.config
    server = LocalSmtpServer(
        mode="starttls",
        server_context=stack.tls.server_context,
        users={config.smtp_username: config.smtp_password},
        handler=handler,
    ).start()
    handler.port = server.port
    try:
        saved = requests.put(
            f"{stack.api_url}/settings/company",
            json=demo_settings(config) | {"port": server.port},
            timeout=WAIT,
        )
        assert saved.status_code == 200, saved.text
        yield handler
    finally:
        handler.release.set()
        server.stop()


def send_test(stack: LocalStack) -> dict[str, Any]:
    response = requests.post(
        f"{stack.api_url}/settings/company/test", json={"to": "you@demo.test"}, timeout=WAIT
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


class TestHeldSends:
    def test_the_api_answers_while_a_test_send_is_held_in_data(
        self, stack: LocalStack, held: HeldData
    ) -> None:
        with ThreadPoolExecutor(1) as sender:
            sending = sender.submit(send_test, stack)
            assert held.wait_inside(1), "the test-send never reached DATA"

            response = requests.get(f"{stack.api_url}/settings/company", timeout=HOLD_LIMIT - 2)

            assert response.status_code == 200, response.text
            assert response.json()["port"] == held.port
            assert (held.inside, held.release.is_set(), sending.done()) == (1, False, False)
            held.release.set()
            assert sending.result(WAIT)["ok"] is True
        assert len(held.messages) == 1

    def test_two_test_sends_are_in_data_at_the_same_time(self, stack: LocalStack, held: HeldData) -> None:
        with ThreadPoolExecutor(2) as senders:
            first = senders.submit(send_test, stack)
            assert held.wait_inside(1), "the first test-send never reached DATA"
            second = senders.submit(send_test, stack)

            both = held.wait_inside(2)

            assert both, "the second test-send did not reach DATA while the first was held there"
            assert not first.done() and not held.release.is_set()
            held.release.set()
            assert (first.result(WAIT)["ok"], second.result(WAIT)["ok"]) == (True, True)
        assert sorted(m.rcpt_tos for m in held.messages) == [("you@demo.test",), ("you@demo.test",)]


def test_stop_ends_every_worker_process_and_thread(tmp_path: Path) -> None:
    with no_leaks():
        stack = start_stack(stack_config(tmp_path), out=lambda line: None)
        try:
            assert stack.api_pool is not None
            assert requests.get(f"{stack.api_url}/providers", timeout=WAIT).status_code == 200
            stack.api_pool.wait_ready()
            pids = stack.api_pool.pids
            assert len(pids) == 2  # the one that answered, and a warm spare
        finally:
            stack.stop()

    assert [pid for pid in pids if process_exists(pid)] == []
    stack.stop()  # a second stop is harmless


def test_the_number_of_workers_comes_from_local_api_workers() -> None:
    assert StackConfig.from_env({}).api_workers == 4
    assert StackConfig.from_env({"LOCAL_API_WORKERS": "2"}).api_workers == 2
    assert StackConfig.from_env({"LOCAL_API_WORKERS": "0"}).api_workers == 0  # in the stack's process
    with pytest.raises(ValueError, match="LOCAL_API_WORKERS"):
        StackConfig.from_env({"LOCAL_API_WORKERS": "many"})


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- the pool with handlers written for the test --------------------------------------------------

HANDLER = """
import json
import os
import pathlib
import time
import uuid
from functools import cache

from mailer.delivery import guard

services = cache(uuid.uuid4)  # what a handler module caches per container


def lambda_handler(event, context):
    action = event.get("action")
    folder = pathlib.Path(event.get("folder", "."))
    if action == "hold":  # say so, then wait for the test's release file
        (folder / f"started-{event['tag']}").write_text(str(os.getpid()))
        deadline = time.monotonic() + 20
        while not (folder / f"release-{event['tag']}").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    if action == "log":
        print(json.dumps({"level": "INFO", "message": "handled", "function_name": context.function_name}))
        print("a plain line", end="")  # no newline: the end of the invocation ends it
    if action == "exit":
        os._exit(3)
    if action == "raise":
        raise KeyError("boom")
    resolver = guard.resolver
    return {
        "pid": os.getpid(),
        "container": str(services()),
        "resolver": f"{resolver.__module__}:{resolver.__qualname__}",
    }
"""


@pytest.fixture
def handlers(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "app.py").write_text(HANDLER)
    (tmp_path / "broken.py").write_text("raise KeyError('410')\n")
    return {"Echo": (tmp_path / "app.py", "lambda_handler"), "Broken": (tmp_path / "broken.py", "handler")}


@pytest.fixture
def make_pool(handlers: dict[str, tuple[Path, str]]) -> Iterator[Callable[..., ApiProcessPool]]:
    pools: list[ApiProcessPool] = []

    def make(size: int, started: int | None = None, **options: Any) -> ApiProcessPool:
        """A pool of `size` processes, `started` of them (default all) ready."""
        pool = ApiProcessPool(size, handlers, **options).start(size if started is None else started)
        pools.append(pool)
        assert pool.wait_ready() == (size if started is None else started)
        return pool

    yield make
    for pool in pools:
        pool.stop()


class Holds:
    """Invocations that wait in the handler until released, each by its tag."""

    def __init__(self, pool: ApiProcessPool, folder: Path) -> None:
        self.pool = pool
        self.folder = folder
        self.threads = ThreadPoolExecutor(8)

    def start(self, tag: str) -> Future[Any]:
        event = {"action": "hold", "tag": tag, "folder": str(self.folder)}
        return self.threads.submit(self.pool.invoke, "Echo", event)

    def started(self, tag: str) -> bool:
        return (self.folder / f"started-{tag}").exists()

    def count(self) -> int:
        """How many have started."""
        return len(list(self.folder.glob("started-*")))

    def wait_started(self, *tags: str) -> bool:
        return self._wait(lambda: all(self.started(tag) for tag in tags))

    def wait_count(self, count: int) -> bool:
        return self._wait(lambda: self.count() >= count)

    @staticmethod
    def _wait(done: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + WAIT
        while not done():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def pid(self, tag: str) -> int:
        return int((self.folder / f"started-{tag}").read_text())

    def release(self, tag: str) -> None:
        (self.folder / f"release-{tag}").touch()

    def close(self) -> None:
        for path in self.folder.glob("started-*"):
            self.release(path.name.removeprefix("started-"))
        self.threads.shutdown()


@pytest.fixture
def holds(tmp_path: Path) -> Iterator[Callable[[ApiProcessPool], Holds]]:
    made: list[Holds] = []

    def make(pool: ApiProcessPool) -> Holds:
        folder = tmp_path / f"holds-{len(made)}"
        folder.mkdir()
        made.append(Holds(pool, folder))
        return made[-1]

    yield make
    for hold in made:
        hold.close()


def test_a_queued_request_goes_to_the_process_that_became_free(make_pool, holds) -> None:
    pool = make_pool(2)
    hold = holds(pool)
    a, b = hold.start("a"), hold.start("b")
    assert hold.wait_started("a", "b")
    c = hold.start("c")  # both processes are busy: it waits, it is not given to one of them

    hold.release("a")

    assert hold.wait_started("c")
    assert not b.done()
    assert hold.pid("c") == a.result(WAIT)["pid"] != hold.pid("b")
    hold.release("b")
    hold.release("c")
    assert (b.result(WAIT)["pid"], c.result(WAIT)["pid"]) == (hold.pid("b"), hold.pid("a"))


def test_processes_are_started_as_requests_need_them_up_to_the_size(make_pool, holds) -> None:
    pool = make_pool(3, started=1)
    assert len(pool.pids) == 1

    for _ in range(3):
        pool.invoke("Echo", {})
    pool.wait_ready()

    assert len(pool.pids) == 2  # the one in use and a warm spare
    hold = holds(pool)
    held = [hold.start(tag) for tag in "abcd"]
    assert hold.wait_count(3)
    assert len(pool.pids) == 3 and hold.count() == 3  # one of the four waits: three processes at most
    for tag in "abcd":
        hold.release(tag)
    assert len({future.result(WAIT)["pid"] for future in held}) == 3


def test_requests_one_after_another_find_the_same_warm_process(make_pool) -> None:
    pool = make_pool(3)

    answers = [pool.invoke("Echo", {}) for _ in range(4)]

    assert len({(a["pid"], a["container"]) for a in answers}) == 1


def test_clear_caches_gives_every_process_a_cold_container(make_pool, holds) -> None:
    pool = make_pool(2)

    def containers() -> set[tuple[int, str]]:
        hold = holds(pool)
        futures = [hold.start("x"), hold.start("y")]
        assert hold.wait_started("x", "y")
        hold.release("x")
        hold.release("y")
        return {(f.result(WAIT)["pid"], f.result(WAIT)["container"]) for f in futures}

    before = containers()
    pool.clear_caches()
    after = containers()

    assert {pid for pid, _ in before} == {pid for pid, _ in after} and len(before) == 2
    assert not before & after


def test_the_workers_output_goes_to_the_lambda_log(make_pool, tmp_path: Path, capsys) -> None:
    console: list[str] = []
    lambda_log = LambdaLog(tmp_path / "lambda.jsonl", console.append).start()
    try:
        pool = make_pool(1)
        pool.invoke("Echo", {"action": "log"})
    finally:
        lambda_log.stop()

    (record,) = [json.loads(line) for line in (tmp_path / "lambda.jsonl").read_text().splitlines()]
    assert (record["message"], record["function_name"]) == ("handled", "Echo")
    assert [line.split("] ", 1)[1] for line in console] == ["INFO  Echo: handled"]
    assert "a plain line\n" in capsys.readouterr().out  # not JSON: on the console, as it was


def test_the_workers_resolve_names_with_the_resolver_swapped_in_here(make_pool, monkeypatch) -> None:
    pool = make_pool(1)
    assert guard.resolver.__module__ == "tests.support.dns"  # tests/conftest.py swapped it in

    assert pool.invoke("Echo", {})["resolver"] == "tests.support.dns:offline_resolver"

    monkeypatch.setattr(guard, "resolver", lambda host, port: ["127.0.0.1"])
    with pytest.raises(MirrorError, match="cannot import by name"):
        pool.invoke("Echo", {})


def test_a_handler_that_raises_fails_only_its_request(make_pool, capfd) -> None:
    pool = make_pool(1)

    with pytest.raises(HandlerRaised, match="Echo raised KeyError"):
        pool.invoke("Echo", {"action": "raise"})

    assert "KeyError: 'boom'" in capfd.readouterr().err  # the worker's traceback, as Lambda logs it
    assert pool.invoke("Echo", {})["pid"] > 0


def test_a_worker_that_exits_fails_its_request_and_is_replaced(make_pool) -> None:
    pool = make_pool(1)
    (before,) = pool.pids

    with pytest.raises(WorkerExited, match="exit code 3"):
        pool.invoke("Echo", {"action": "exit"})

    assert pool.invoke("Echo", {})["pid"] not in (before, os.getpid())
    assert len(pool.pids) == 1


def test_a_function_that_fails_to_import_answers_every_request_with_the_error(make_pool) -> None:
    reported: list[tuple[str, str]] = []
    pool = make_pool(2, on_import_error=lambda name, error, trace: reported.append((name, error)))

    for _ in range(3):
        with pytest.raises(FunctionImportError, match=r"Broken failed to import: KeyError: '410'"):
            pool.invoke("Broken", {})

    assert reported == [("Broken", "KeyError: '410'")] * 2  # once per process: it imports for itself
    assert pool.invoke("Echo", {})["pid"] > 0
