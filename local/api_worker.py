"""One API worker process of local.api_pool: a Lambda container for the API's functions.

It is started as `python -c BOOT <fd> <import path...>`: the fd is its end of a socket pair to the
stack's process, and the import path is the stack's; so are its environment and working folder.
The first message it reads names the functions to import. It imports each one (a function that
fails to import answers every invocation with the error, as Lambda does), says "ready", and then
handles one message at a time until it is told to stop or the stack's end of the socket closes.

Its stdout is the socket: each complete line is sent as it is written, so Powertools' JSON records
and the metrics' EMF lines reach the stack's Lambda log while the request runs. Before each
invocation it installs the module globals the stack mirrors (local.api_pool.MIRRORED).
"""

from __future__ import annotations

import importlib
import os
import pickle
import pkgutil
import sys
import threading
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from types import ModuleType
from typing import Any

from local.events import FakeContext
from local.handlers import clear_services, import_handler, quiet_handler_warnings

# What a worker runs (`python -c BOOT fd path...`): the stack's import path first, then this module.
BOOT = "import sys; sys.path[:] = sys.argv[2:]; from local.api_worker import main; main(int(sys.argv[1]))"

Reply = tuple[str, Any]


class LineSender:
    """The worker's stdout: complete lines go to the stack's process as they are written."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, conn: Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock
        self._pending = ""

    def write(self, text: str) -> int:
        with self._lock:
            lines, _, self._pending = (self._pending + text).rpartition("\n")
            if lines:
                self._conn.send(("out", lines + "\n"))
        return len(text)

    def end_line(self) -> None:
        """At the end of an invocation a partial line is a line, as in Lambda's log stream."""
        if self._pending:
            self.write("\n")

    def flush(self) -> None:
        pass

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False


class Container:
    """The functions of one worker, imported when it starts, and the globals it mirrors."""

    def __init__(self, handlers: dict[str, tuple[str, str]]) -> None:
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.modules: dict[str, ModuleType] = {}
        self.import_errors: dict[str, tuple[str, str]] = {}  # function -> (error, traceback)
        self._mirrored: dict[str, str] = {}
        for function, (path, name) in handlers.items():
            try:
                module = import_handler(function, Path(path))
                self.handlers[function] = getattr(module, name)
                self.modules[function] = module
            except Exception as exc:  # noqa: BLE001 - Lambda answers every invocation with it
                error = "".join(traceback.format_exception_only(exc)).strip()
                self.import_errors[function] = (error, traceback.format_exc())
        self.clear_caches()

    def clear_caches(self) -> None:
        for module in self.modules.values():
            clear_services(module)

    def mirror(self, values: dict[str, str]) -> None:
        """`{"module:attribute": "module:qualname"}`: set each attribute to the object so named."""
        for target, name in values.items():
            if self._mirrored.get(target) != name:
                module_name, attribute = target.split(":")
                setattr(importlib.import_module(module_name), attribute, pkgutil.resolve_name(name))
                self._mirrored[target] = name

    def handle(self, function: str, event: dict[str, Any], mirrored: dict[str, str]) -> Reply:
        """("result", the handler's answer), ("raised", why) or ("import_error", why)."""
        try:
            self.mirror(mirrored)
        except Exception as exc:  # noqa: BLE001 - the request fails, the worker stays
            return "raised", f"{function}: could not install {mirrored}: {exc}"
        if function in self.import_errors:
            return "import_error", f"{function} failed to import: {self.import_errors[function][0]}"
        context = FakeContext(
            function_name=function,
            invoked_function_arn=f"arn:aws:lambda:us-east-1:123456789012:function:{function}",
        )
        try:
            return "result", self.handlers[function](event, context)
        except Exception as exc:  # noqa: BLE001 - the invocation's error, as Lambda reports it
            traceback.print_exc(file=sys.stderr)
            return "raised", f"{function} raised {type(exc).__name__}"


def _exit() -> None:
    """Skip the interpreter's finalization, as multiprocessing's forked workers do: nothing is left to
    flush (stdout is the socket, every line is sent), and tearing down boto3 and Powertools takes a
    third of a second."""
    sys.stderr.flush()
    os._exit(0)


def main(fd: int) -> None:
    conn = Connection(fd)
    lock = threading.Lock()
    stdout = LineSender(conn, lock)
    sys.stdout = stdout  # before the imports: Powertools' handlers keep the stream they are given
    quiet_handler_warnings()
    container = Container(conn.recv())
    with lock:
        conn.send(("ready", container.import_errors))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            _exit()
        if message[0] == "stop":
            _exit()
        if message[0] == "clear":
            container.clear_caches()
            reply: Reply = ("cleared", None)
        else:
            _, function, event, mirrored = message
            reply = container.handle(function, event, mirrored)
            stdout.end_line()
        with lock:
            try:
                conn.send(reply)
            except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
                conn.send(("raised", f"the answer cannot be sent back to the stack: {exc}"))
