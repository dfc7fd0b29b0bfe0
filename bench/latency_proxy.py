"""A TCP proxy on 127.0.0.1 that puts a server far away: a fixed one-way delay each way, and a count
of round trips.

Each chunk read from one side is written to the other at its arrival time + `delay`, so the bytes
keep their order and a large message is delayed once, not per byte (there is no bandwidth limit).
A round trip is therefore 2 x `delay`. The delay applies to data: TCP's handshake and ACKs stay on
loopback. To keep a new connection's cost honest, the upstream connection is opened 1.5 round trips
after the client's, so the banner arrives two round trips after connect() as it would over a network
(SYN, SYN-ACK, ACK, then the banner).

Round trips are counted as client turns: data from the client reaching the proxy when the last data
on that connection came from the server, or when none has come yet. A client that waits for every
reply makes one turn per reply it waits for; a pipelined group of commands is one turn; a QUIT sent
without waiting for its reply is one turn too. TLS handshakes count like any other data (a TLS 1.3
handshake is one turn: the ClientHello; the client's Finished goes with the next command).

The proxy runs an asyncio loop in a background thread of its own: `with LatencyProxy(port, 0.025)
as proxy:` then connect to `proxy.port`. `delay` may be changed between runs; `turns` is the count
over every connection so far.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from typing import Any

HOST = "127.0.0.1"
CHUNK = 256 * 1024


class LatencyProxy:
    def __init__(self, upstream_port: int, delay: float, *, handshake: bool = True) -> None:
        self.upstream_port = upstream_port
        self.delay = delay  # one way, in seconds
        self.handshake = handshake  # open the upstream connection 1.5 round trips late (see above)
        self.port = 0
        self.turns = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, name="latency-proxy", daemon=True)

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> LatencyProxy:
        self._thread.start()
        if not self._ready.wait(10) or not self.port:
            raise RuntimeError("the latency proxy did not start")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._shutdown)
            self._thread.join(10)

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(asyncio.start_server(self._serve, HOST, 0))
            self.port = self._server.sockets[0].getsockname()[1]
        finally:
            self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        self._loop.call_later(0.05, self._loop.stop)

    # --- one connection ----------------------------------------------------------------------------

    async def _serve(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        _no_delay(client_out)
        upstream_out: asyncio.StreamWriter | None = None
        try:
            if self.handshake:
                await asyncio.sleep(3 * self.delay)
            upstream_in, upstream_out = await asyncio.open_connection(HOST, self.upstream_port)
            _no_delay(upstream_out)
            last: list[str] = [""]  # who sent the last data on this connection: "client" or "server"
            await asyncio.gather(
                self._pump(client_in, upstream_out, last, "client"),
                self._pump(upstream_in, client_out, last, "server"),
            )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for writer in (client_out, upstream_out):
                if writer is not None:
                    writer.close()
            self._tasks.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, last: list[str], side: str
    ) -> None:
        """Read from one side and hand each chunk, stamped with when it is due, to the writer."""
        due: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        forwarding = asyncio.create_task(self._forward(due, writer))
        try:
            while True:
                try:
                    data = await reader.read(CHUNK)
                except OSError:
                    data = b""
                if data:
                    if side == "client" and last[0] != "client":
                        self.turns += 1
                    last[0] = side
                due.put_nowait((self._loop.time() + self.delay, data))
                if not data:
                    break
        except asyncio.CancelledError:
            forwarding.cancel()
            raise
        await forwarding

    async def _forward(self, due: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        while True:
            at, data = await due.get()
            wait = at - self._loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                if not data:  # the other side finished: pass the end on, after its last bytes
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
            except OSError:
                return


def _no_delay(writer: Any) -> None:
    """No Nagle's algorithm in the proxy: it must add the delay it was given and nothing else."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
