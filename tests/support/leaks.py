"""Checks that a block leaves no thread running and no socket open behind it."""

from __future__ import annotations

import gc
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def settle(probe: Callable[[], int], expected: int, seconds: float = 3.0) -> int:
    """Threads and sockets close asynchronously: wait a little for the count to come back."""
    deadline = time.monotonic() + seconds
    value = probe()
    while value != expected and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.02)
        value = probe()
    return value


def socket_inodes() -> set[str]:
    """The sockets this process holds open, by inode (`socket:[123]`): unlike a count or an fd
    number, an inode names one socket, so a socket of an earlier test closing meanwhile does not
    hide a new one."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found


@contextmanager
def no_leaks() -> Iterator[list[str]]:
    """Fails the block when it leaves a thread running or a socket for the garbage collector to close.

    Yields the list of ResourceWarnings (filled on exit) so a caller can show them.
    """
    before = set(threading.enumerate())
    unclosed: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        yield unclosed
        gc.collect()
    unclosed += [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning) and "socket" in str(w.message).lower()
    ]
    assert unclosed == [], unclosed

    def started_here() -> int:
        """Threads the block started that still run (one that ended meanwhile does not hide one)."""
        return len(set(threading.enumerate()) - before)

    assert settle(started_here, 0) == 0, sorted(map(str, set(threading.enumerate()) - before))
