"""The tests' DNS server: TXT records on loopback, as the local stack serves them (local/dns_server.py)."""

from __future__ import annotations

from local.dns_server import LocalDnsServer as DnsTestServer
from local.dns_server import TxtRecord, ZoneResolver, unused_udp_port

__all__ = ["DnsTestServer", "TxtRecord", "ZoneResolver", "unused_udp_port"]
