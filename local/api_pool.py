"""The HTTP API's functions in worker processes, as Lambda runs concurrent requests in containers.

API Gateway hands concurrent requests to separate Lambda execution environments. Each one runs one
invocation at a time and keeps its state to itself: the resolver's current event, metrics, cached
clients and services. `ApiProcessPool` does the same with N processes (local.api_worker):

- `LOCAL_API_WORKERS` sets N, the most processes, default 4. With `LOCAL_API_WORKERS=0` the stack
  starts no pool, and the API's functions run in the stack's own process, one request at a time.
  A debugger's breakpoint in a handler works there.
- Each process imports the API functions itself when it starts, as a cold start would, and takes
  requests once it is ready.
- Processes are started as they are needed, as Lambda starts containers: the first while the stack
  starts, then one more whenever the last idle one is taken, and one for each request that has to
  wait. So one request after another keeps two processes, and a burst of requests finds a warm spare
  or waits for a cold start, up to N. A stack that serves one request at a time never pays for the
  imports of N processes.
- An invocation goes to an idle process, and the calling thread (the HTTP server's thread for the
  request) waits for the answer. A process is never given a second request while one runs. When
  every process is busy, a request waits for the first one to be free.
- The idle process used last takes the next request, so requests made one after another find the
  same warm container.

What a worker process sees:

- the stack's environment as it was when the pool started (by then the stack has set moto's
  endpoint, the CA bundle and the OAuth endpoints), its import path and its working folder;
- each module global named in MIRRORED as it is in this process when the request is sent, passed
  by its import name. The tests swap the address guard's resolver for an offline one
  (tests.support.dns), and a worker installs the same one before it handles the request. A value
  that cannot be imported by name fails the request; the worker is never left on another one;
- its stdout comes here line by line while it works, and is written to this process's `sys.stdout`.
  So the Lambda log (local.lambda_log) takes the workers' JSON records as it takes those of the
  functions run here. Its stderr is this process's stderr.

Each worker is a fresh interpreter, started with fork and exec as multiprocessing's `spawn` starts
its processes, and never a forked copy: this process runs threads (moto, the SMTP servers), and a
fork would copy them in whatever state they are in. It is started directly rather than through
multiprocessing because spawn would run the stack's main module again in every worker: `local.run`
with moto and the SMTP server, or any script that starts the stack without an
`if __name__ == "__main__"` guard. It would also leave spawn's resource-tracker process running.

A process that dies during a request fails that request and is replaced. `stop()` ends every
process and the threads that waited for them to start.
"""

from __future__ import annotations

import itertools
import os
import pkgutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from local.api_worker import BOOT
from local.handlers import FunctionImportError

# Module globals that tests swap in this process and that the workers must swap the same way.
MIRRORED = (("mailer.delivery.guard", "resolver"),)
START_SECONDS = 120.0  # for a worker to import the functions, on a busy machine
STOP_SECONDS = 5.0  # for a worker to exit before it is killed

ImportErrorReport = Callable[[str, str, str], None]  # function, error line, traceback


class InvocationFailed(RuntimeError):
    """The invocation did not come back with the handler's answer."""


class HandlerRaised(InvocationFailed):
    """The handler raised; the worker printed the traceback on stderr, as Lambda logs it."""


class WorkerExited(InvocationFailed):
    """The worker process ended during the invocation, as a Lambda runtime that exits."""


class PoolUnavailable(InvocationFailed):
    """The pool is stopped, or none of its processes could start."""


class MirrorError(InvocationFailed):
    """A global in MIRRORED holds a value that a worker process cannot import by name."""


@dataclass(eq=False)
class _Worker:
    number: int
    process: subprocess.Popen[bytes]
    conn: Connection


@dataclass
class _State:
    idle: list[_Worker] = field(default_factory=list)
    alive: set[_Worker] = field(default_factory=set)  # started and not ended: idle, busy or starting
    starting: int = 0
    waiting: int = 0  # requests waiting for an idle process
    stalled: bool = False  # a process failed to start: no more are started
    closed: bool = False


def mirrored_values() -> dict[str, str]:
    """`module:attribute` -> `module:qualname` of its value in this process, for each of MIRRORED."""
    names = {}
    for module_name, attribute in MIRRORED:
        module = sys.modules.get(module_name)
        if module is None:
            continue
        value = getattr(module, attribute)
        name = f"{getattr(value, '__module__', '?')}:{getattr(value, '__qualname__', '?')}"
        try:
            found = pkgutil.resolve_name(name)
        except (ImportError, AttributeError, ValueError):
            found = None
        if found is not value:
            raise MirrorError(
                f"{module_name}.{attribute} is {value!r} here, which an API worker process cannot "
                "import by name; swap in a module-level function"
            )
        names[f"{module_name}:{attribute}"] = name
    return names


class ApiProcessPool:
    """`start()` starts the processes and returns at once. `invoke()` may be called from any thread;
    `clear_caches()` reaches every process; `stop()` may be called twice."""

    def __init__(
        self,
        size: int,
        handlers: Mapping[str, tuple[Path, str]],
        *,
        on_import_error: ImportErrorReport | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("an API worker pool needs at least one process")
        self.size = size
        self.functions = frozenset(handlers)
        self._handlers = {name: (str(path), handler) for name, (path, handler) in handlers.items()}
        self._on_import_error = on_import_error
        self._env: dict[str, str] = {}
        self._cwd = ""
        self._state = _State()
        self._changed = threading.Condition()
        self._broadcast = threading.Lock()
        self._numbers = itertools.count(1)
        self._starters: set[threading.Thread] = set()

    def start(self, count: int = 1) -> ApiProcessPool:
        """Start `count` processes now; the others as requests need them. Every process the pool
        starts gets this process's environment and working folder as they are now."""
        self._env, self._cwd = dict(os.environ), os.getcwd()
        with self._changed:
            for _ in range(min(count, self.size)):
                self._spawn()
        return self

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers started and not yet ended."""
        with self._changed:
            return sorted(worker.process.pid for worker in self._state.alive)

    def wait_ready(self, timeout: float = START_SECONDS) -> int:
        """Block until no process is starting (each is ready or has failed); how many are idle then."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._state.starting and not self._state.closed:
                if not self._changed.wait(max(0.0, deadline - time.monotonic())):
                    break
            return len(self._state.idle)

    def invoke(self, function: str, event: dict[str, Any]) -> Any:
        mirrored = mirrored_values()
        worker = self._acquire()
        try:
            worker.conn.send(("invoke", function, event, mirrored))
            kind, payload = self._receive(worker)
        except (EOFError, OSError):
            code = self._lost(worker, f"during an invocation of {function}")
            raise WorkerExited(
                f"the API worker process running {function} exited during the invocation (exit code {code})"
            ) from None
        except BaseException:  # where its conversation stands is unknown: it is replaced
            worker.process.kill()
            self._lost(worker, f"after an error here during an invocation of {function}")
            raise
        self._release(worker)
        if kind == "import_error":
            raise FunctionImportError(payload)
        if kind == "raised":
            raise HandlerRaised(payload)
        return payload

    def clear_caches(self) -> None:
        """Every process drops its cached services, as `Functions.clear_caches()` does here."""
        with self._broadcast:
            for worker in self._acquire_all():
                try:
                    worker.conn.send(("clear",))
                    self._receive(worker)
                except (EOFError, OSError):
                    self._lost(worker, "while clearing its caches")
                else:
                    self._release(worker)

    def stop(self) -> None:
        with self._changed:
            self._state.closed = True
            idle, self._state.idle = self._state.idle, []
            alive, self._state.alive = set(self._state.alive), set()
            self._changed.notify_all()
        for worker in idle:
            try:
                worker.conn.send(("stop",))
            except OSError:
                pass  # it has exited already
        for worker in alive - set(idle):  # busy or starting: the thread waiting on it sees it end
            worker.process.terminate()
        for worker in alive:
            _end(worker.process)
        for worker in idle:
            worker.conn.close()
        for thread in list(self._starters):
            thread.join(STOP_SECONDS)

    # --- the processes ---------------------------------------------------------------------------

    def _grow(self) -> None:
        """Start a process for each waiting request, and a spare when none is idle, up to `size`.
        Called with the lock held."""
        state = self._state
        wanted = state.waiting + (0 if state.idle else 1)
        while (
            state.starting < wanted and len(state.alive) < self.size and not (state.closed or state.stalled)
        ):
            self._spawn()

    def _spawn(self) -> None:
        """Called with the lock held, so that stop() never misses a process."""
        number = next(self._numbers)
        conn, child_conn = Pipe(duplex=True)
        with self._changed:
            if self._state.closed:
                conn.close()
                child_conn.close()
                return
            process = subprocess.Popen(  # noqa: S603 - this interpreter, running local.api_worker
                [sys.executable, "-c", BOOT, str(child_conn.fileno()), *sys.path],
                env=self._env,
                cwd=self._cwd,
                stdin=subprocess.DEVNULL,
                pass_fds=[child_conn.fileno()],
                process_group=0,  # Ctrl-C goes to the terminal's process group; the stack stops its workers
            )
            worker = _Worker(number, process, conn)
            self._state.starting += 1
            self._state.alive.add(worker)
        child_conn.close()
        starter = threading.Thread(target=self._await_ready, args=(worker,), name=f"api-worker-{number}")
        self._starters.add(starter)
        starter.start()

    def _await_ready(self, worker: _Worker) -> None:
        try:
            worker.conn.send(self._handlers)
            kind, errors = self._receive(worker, timeout=START_SECONDS)
            if kind != "ready":
                raise ValueError(f"API worker process {worker.number} said {kind!r} before 'ready'")
        except (EOFError, OSError, TimeoutError, ValueError) as exc:
            self._not_started(worker, exc)
        else:
            for function, (error, trace) in errors.items():
                if self._on_import_error is not None:
                    self._on_import_error(function, error, trace)
            with self._changed:
                self._state.starting -= 1
                closed = self._state.closed
                if not closed:
                    self._state.idle.insert(0, worker)  # behind the warm ones: used when they are busy
                self._changed.notify_all()
            if closed:  # stop() has ended the process meanwhile
                worker.conn.close()
        finally:
            self._starters.discard(threading.current_thread())

    def _not_started(self, worker: _Worker, exc: BaseException) -> None:
        with self._changed:
            self._state.starting -= 1
            self._state.stalled = True
            mine = self._forget(worker)
            closed = self._state.closed
            self._changed.notify_all()
        worker.conn.close()
        if mine:
            worker.process.kill()
            code = _end(worker.process)
            if not closed:
                print(
                    f"API worker process {worker.number} did not start ({type(exc).__name__}, "
                    f"exit code {code}); no more are started, the others serve the API",
                    file=sys.stderr,
                )

    def _acquire(self) -> _Worker:
        with self._changed:
            state = self._state
            while True:
                if state.closed:
                    raise PoolUnavailable("the local stack is stopping")
                if state.idle:
                    worker = state.idle.pop()
                    self._grow()
                    return worker
                state.waiting += 1
                self._grow()
                if not state.alive:
                    state.waiting -= 1
                    raise PoolUnavailable("no API worker process is running (see the stack's stderr)")
                self._changed.wait()
                state.waiting -= 1

    def _acquire_all(self) -> list[_Worker]:
        """Every worker, each once idle; none when the pool stops meanwhile."""
        taken: list[_Worker] = []
        with self._changed:
            while not self._state.closed:
                taken += self._state.idle
                self._state.idle = []
                if all(worker in taken for worker in self._state.alive):
                    return [worker for worker in taken if worker in self._state.alive]
                self._changed.wait()
        for worker in taken:  # stop() has ended them
            worker.conn.close()
        return []

    def _release(self, worker: _Worker) -> None:
        with self._changed:
            if not self._state.closed:
                self._state.idle.append(worker)
                self._changed.notify_all()
                return
        worker.conn.close()  # stop() has ended the process meanwhile

    def _forget(self, worker: _Worker) -> bool:
        """Whether the worker was still counted; if so the caller ends it (never two threads at once).
        Called with the lock held."""
        if worker in self._state.alive:
            self._state.alive.discard(worker)
            return True
        return False

    def _lost(self, worker: _Worker, when: str) -> int | None:
        """The process ended (its end of the socket closed): reap it, say so, start another.

        Returns its exit code when this thread reaped it."""
        with self._changed:
            mine = self._forget(worker)
            closed = self._state.closed
            self._changed.notify_all()
        worker.conn.close()
        if not mine:
            return None  # stop() ends it
        code = _end(worker.process)
        if not closed:
            print(f"API worker process {worker.number} exited {when} (exit code {code})", file=sys.stderr)
            with self._changed:
                self._grow()
        return code

    @staticmethod
    def _receive(worker: _Worker, timeout: float | None = None) -> tuple[str, Any]:
        """The worker's next reply, writing out what it printed meanwhile."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if deadline is not None and not worker.conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"no answer from API worker process {worker.number}")
            kind, payload = worker.conn.recv()
            if kind != "out":
                return kind, payload
            sys.stdout.write(payload)


def _end(process: subprocess.Popen[bytes]) -> int | None:
    """Wait for the process to exit (killed when it does not); its exit code."""
    try:
        return process.wait(STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(STOP_SECONDS)
