"""Lambda SnapStart: what each environment restored from a function version's snapshot must not
share with the others restored from it.

A snapshot is taken after the handler module is imported (the cold start: configuration read and
checked, services wired), before any invocation. At that point no AWS client, connection, secret or
token exists yet (they are all made lazily), so a restore has nothing stale to drop; the hook below
makes sure of it for the clients, whatever a later change imports at cold start. Ids and tokens come
from `secrets` (the operating system's random source). The email package draws Message-IDs and MIME
boundaries from `random`, whose state a snapshot would hand to every restored environment alike:
two of them could then make the same Message-ID in the same hundredth of a second, and bounce
reports find their entry by it. The hook seeds `random` again from the operating system.
"""

from __future__ import annotations

import random

from mailer.dal import clients


def fresh_after_restore() -> None:
    """No connection pool or credentials carried over from the environment the snapshot was taken
    in, and a random generator of its own."""
    clients.reset()
    random.seed()


try:  # the Snapshot Restore for Python library ships with Lambda's managed Python runtimes
    from snapshot_restore_py import register_after_restore
except ImportError:  # tests and the local stack: no snapshots
    pass
else:
    register_after_restore(fresh_after_restore)
