"""The benchmarks' SMTP server: local.smtp_server.LocalSmtpServer (aiosmtpd, STARTTLS + AUTH) with a
handler that counts each message and discards it, in a process of its own so it runs on the other
core and not under the client's GIL.

The parent talks to it over pipes: the child prints `PORT <n>`, then answers each `count` line with
the number of messages accepted so far, and stops on `stop` or end of input.
"""

from __future__ import annotations

import logging
import ssl
import subprocess
import sys
from typing import Any

from bench.common import ACCOUNT, PASSWORD, ROOT, TlsFiles


class CountingSink:
    """aiosmtpd handler: count the message, keep nothing."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1  # only the server's event-loop thread writes it
        return "250 2.0.0 OK: counted and discarded"


def serve(server_chain: str) -> None:
    from local.smtp_server import LocalSmtpServer, quiet_aiosmtpd

    quiet_aiosmtpd()
    logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd warns of its own deprecations
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_chain)
    handler = CountingSink()
    server = LocalSmtpServer(
        mode="starttls",
        server_context=context,
        users={ACCOUNT: PASSWORD},
        handler=handler,
        data_size_limit=64 * 1024 * 1024,
    ).start()
    print(f"PORT {server.port}", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "count":
                print(handler.count, flush=True)
            elif line.strip() == "stop":
                break
    finally:
        server.stop()


class SinkServer:
    """`with SinkServer(tls) as sink:` -> sink.port, sink.count (messages accepted so far)."""

    def __init__(self, tls: TlsFiles) -> None:
        self.tls = tls
        self.port = 0
        self._process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def count(self) -> int:
        assert self._process and self._process.stdin and self._process.stdout
        self._process.stdin.write("count\n")
        self._process.stdin.flush()
        return int(self._process.stdout.readline())

    def __enter__(self) -> SinkServer:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.smtp_sink", self.tls.server_chain],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self._process.stdout is not None
        first = self._process.stdout.readline()
        if not first.startswith("PORT "):
            self.__exit__()
            raise RuntimeError(f"the SMTP sink did not start: {first!r}")
        self.port = int(first.split()[1])
        return self

    def __exit__(self, *exc: object) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin:
                process.stdin.write("stop\n")
                process.stdin.close()
            process.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            process.terminate()
            process.wait(5)


if __name__ == "__main__":
    serve(sys.argv[1])
