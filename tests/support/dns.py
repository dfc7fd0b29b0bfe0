"""A resolver for the tests that never sends a query: the address guard's checks run on its answers.

Numeric forms (dotted, decimal, octal, `0`, IPv6, IPv4-mapped) are parsed here as the system
resolver parses them, without a lookup. `localhost` is loopback. The provider presets' host names
answer a public address, so settings naming them save without a warning; they are never connected
to (no test sends to a preset host). `*.internal.test` answers an internal (loopback) address, as a name that
points inside a network would. Every other name does not resolve.
"""

from __future__ import annotations

import ipaddress
import socket

from mailer.delivery.guard import HostNotFound
from mailer.delivery.providers import PROVIDERS

PUBLIC = "52.96.0.10"  # stands for any public mail server; no test opens a connection to it
PRIVATE = "127.0.0.3"  # what *.internal.test answers: inside (loopback, not admitted), never connected to
PRESET_HOSTS = {p.host for p in PROVIDERS.values()}


def offline_resolver(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    try:
        return [socket.inet_ntoa(socket.inet_aton(host))]  # 2130706433, 0177.0.0.1, 0: parsed locally
    except OSError:
        pass
    name = host.lower().rstrip(".")
    if name == "localhost":
        return ["127.0.0.1", "::1"]
    if name in PRESET_HOSTS or name.endswith(".public.test"):
        return [PUBLIC]
    if name.endswith(".internal.test"):
        return [PRIVATE]
    raise HostNotFound(host)
