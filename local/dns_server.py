"""A real DNS server on 127.0.0.1 (UDP, its own thread) that serves TXT records: to the test send's
SPF and DMARC checks in the local stack (make run), and to the tests.

`zone` maps a name to its TXT records; a record is a string (split into 255-byte strings when longer,
as a DNS server sends it) or a tuple of the strings it is sent as. A name not in the zone is NXDOMAIN;
a name in it asked for another type answers no records. Names in `servfail` answer SERVFAIL, names in
`silent` get no answer at all, as from a server that drops the query. `queries` notes every query
the server received, answered or not.

`port` 0 (the default) takes a free port. `servers` is the value of MAILER_DNS_SERVERS that points at
it. Leaving the context manager (or stop()) closes the socket and joins the thread.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from dnslib import QTYPE, RCODE, RR, TXT, DNSError, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, DNSServer

TxtRecord = str | tuple[str, ...]


def _name(name: object) -> str:
    return str(name).rstrip(".").lower()


def _strings(record: TxtRecord) -> list[bytes]:
    if isinstance(record, tuple):
        return [part.encode() for part in record]
    data = record.encode()
    return [data[i : i + 255] for i in range(0, len(data), 255)] or [b""]


class ZoneResolver:
    """The dnslib resolver: answers from the zone, or None for a query to leave unanswered."""

    def __init__(
        self, zone: Mapping[str, Iterable[TxtRecord]], servfail: Iterable[str], silent: Iterable[str]
    ) -> None:
        self.zone = {_name(k): list(v) for k, v in zone.items()}
        self.servfail = {_name(n) for n in servfail}
        self.silent = {_name(n) for n in silent}
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord | None:
        name = _name(request.q.qname)
        self.queries.append((name, str(QTYPE[request.q.qtype])))
        if name in self.silent:
            return None
        reply = request.reply()
        if name in self.servfail:
            reply.header.rcode = RCODE.SERVFAIL
        elif name not in self.zone:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.TXT:
            for record in self.zone[name]:
                reply.add_answer(RR(request.q.qname, QTYPE.TXT, rdata=TXT(_strings(record)), ttl=60))
        return reply


class _Handler(DNSHandler):
    """dnslib's UDP handler, except that a query the resolver leaves unanswered gets no reply."""

    def handle(self) -> None:
        data, sock = self.request
        try:
            reply = self.server.resolver.resolve(DNSRecord.parse(data), self)
        except DNSError:
            return
        if reply is not None:
            sock.sendto(reply.pack(), self.client_address)


def unused_udp_port() -> int:
    """A loopback UDP port nothing listens on (it was free a moment ago): a DNS server that is down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalDnsServer:
    """The server; see the module docstring for what it answers."""

    def __init__(
        self,
        zone: Mapping[str, Iterable[TxtRecord]] | None = None,
        *,
        servfail: Iterable[str] = (),
        silent: Iterable[str] = (),
        port: int = 0,
    ) -> None:
        self.resolver = ZoneResolver(zone or {}, servfail, silent)
        self._dns: DNSServer | None = None
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def queries(self) -> list[tuple[str, str]]:
        return self.resolver.queries

    @property
    def servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalDnsServer:
        quiet = DNSLogger(log="-request,-reply,-truncated,-error")
        # socketserver's plain UDPServer, not dnslib's threading one: one thread answers every query in
        # turn, so stopping the server leaves no thread behind.
        self._dns = DNSServer(
            self.resolver,
            address="127.0.0.1",
            port=self.port,
            logger=quiet,
            handler=_Handler,
            server=socketserver.UDPServer,
        )
        self.port = self._dns.server.server_address[1]
        self._thread = threading.Thread(
            target=self._dns.server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"dns-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._dns is None:
            return
        self._dns.server.shutdown()
        self._dns.server.server_close()
        if self._thread is not None:
            self._thread.join()
        self._dns = self._thread = None

    def __enter__(self) -> LocalDnsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
