"""Lambda's log stream on this machine: the handlers' JSON output goes to a file, not the console.

In Lambda, what a function writes to stdout goes to CloudWatch Logs: Powertools Logger's JSON records
and Metrics' EMF lines. Here the functions run in the stack's process, or in its API worker processes,
whose stdout is written to the stack's `sys.stdout` line by line (local.api_pool). There that output
would mix with the stack's own one-line summaries. `LambdaLog` puts a line router on stdout and on every
Powertools log handler (a handler keeps the stream it was given when its Logger was made): each line
that is a JSON object is appended to the log file (LAMBDA_LOG_FILE), a log record of INFO or above is
also shown on the console as one short line, and every other line reaches the console unchanged.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from aws_lambda_powertools.logging.formatter import BasePowertoolsFormatter

from local.console import is_log_record, log_summary


def _json_object(line: str) -> dict[str, Any] | None:
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def powertools_handlers() -> list[logging.StreamHandler[Any]]:
    """The stream handlers Powertools Logger installed (whatever the service name)."""
    known = list(logging.Logger.manager.loggerDict.values())
    loggers = [item for item in known if isinstance(item, logging.Logger)]
    return [
        handler
        for logger in loggers
        for handler in list(logger.handlers)
        if isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and isinstance(handler.formatter, BasePowertoolsFormatter)
    ]


class LineRouter:
    """A text stream that offers every JSON-object line to `on_json` and writes the rest to `console`.

    `on_json` answers whether it took the line. Lines are collected per thread, so two threads
    writing at once do not mix halves of lines.
    """

    def __init__(self, console: IO[str], on_json: Callable[[str, dict[str, Any]], bool]) -> None:
        self.console = console
        self.on_json = on_json
        self._pending = threading.local()
        self._lock = threading.RLock()

    def write(self, text: str) -> int:
        *lines, rest = (getattr(self._pending, "text", "") + text).split("\n")
        self._pending.text = rest  # before routing: on_json may print to this stream again
        for line in lines:
            record = _json_object(line)
            if record is None or not self.on_json(line, record):
                with self._lock:
                    self.console.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        rest, self._pending.text = getattr(self._pending, "text", ""), ""
        with self._lock:
            if rest:
                self.console.write(rest)
            self.console.flush()

    def writable(self) -> bool:
        return True

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, ... of the console
        return getattr(self.console, name)


class LambdaLog:
    """`start()` before importing the handlers and `attach()` after; `stop()` puts stdout and the
    handlers' streams back."""

    def __init__(self, path: Path, out: Callable[[str], None], console_level: int = logging.INFO) -> None:
        self.path = path
        self.out = out
        self.console_level = console_level
        self._file: IO[str] | None = None
        self._router: LineRouter | None = None
        self._previous: dict[logging.StreamHandler[Any], Any] = {}
        self._lock = threading.Lock()

    def start(self) -> LambdaLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._router = LineRouter(sys.stdout, self._on_json)
        sys.stdout = self._router  # type: ignore[assignment] # EMF metrics are print()ed
        self.attach()
        return self

    def attach(self) -> None:
        """Point every Powertools log handler at the router; again after importing another handler."""
        if self._router is None:
            return
        for handler in powertools_handlers():
            if handler.stream is not self._router:
                self._previous[handler] = handler.stream
                handler.setStream(self._router)  # type: ignore[arg-type]

    def stop(self) -> None:
        """Idempotent."""
        router, self._router = self._router, None
        if router is None:
            return
        for handler in powertools_handlers():
            if handler.stream is router:
                handler.setStream(self._previous.get(handler, router.console))
        self._previous.clear()
        if sys.stdout is router:
            sys.stdout = router.console  # type: ignore[assignment]
        router.flush()
        with self._lock:
            file, self._file = self._file, None
        if file is not None:
            file.close()

    def _on_json(self, line: str, record: dict[str, Any]) -> bool:
        with self._lock:
            if self._file is None:  # stopped: a late line goes to the console, as it would without us
                return False
            self._file.write(line + "\n")
            self._file.flush()
        if is_log_record(record) and self._level(record) >= self.console_level:
            self.out(log_summary(record))
        return True

    @staticmethod
    def _level(record: dict[str, Any]) -> int:
        level = logging.getLevelName(str(record.get("level", "")).upper())
        return level if isinstance(level, int) else logging.CRITICAL
