"""The address guard: mail hosts that are, or resolve to, internal addresses are refused.

A host given in settings could otherwise point the test-send at the network around the function
(metadata services, internal relays, other services' ports). The guard resolves the host, checks
every address it resolves to, and hands back the one to connect to, so the connection goes to an
address that was checked (a second lookup could answer otherwise: DNS rebinding). Numeric forms
(decimal, octal, `0`, IPv4-mapped IPv6) count as what they resolve to. Networks an operator trusts,
such as an on-premises relay, are admitted with MAILER_ALLOWED_NETWORKS.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)


class AddressNotAllowed(Exception):
    def __init__(self, host: str, address: str) -> None:
        super().__init__(f"{host} resolves to {address}, an internal address")
        self.host = host
        self.address = address


class HostNotFound(Exception):
    """The name does not resolve."""


def parse_networks(text: str | None) -> tuple[IpNetwork, ...]:
    """`MAILER_ALLOWED_NETWORKS`: comma-separated CIDRs; ValueError naming the bad one."""
    networks = []
    for part in (text or "").split(","):
        if part.strip():
            try:
                networks.append(ipaddress.ip_network(part.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{part.strip()!r} is not a network (for example 10.0.0.0/8)") from None
    return tuple(networks)


def is_internal(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv4Address) and address in SHARED)
    )


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives (numeric forms are parsed, not looked up)."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise HostNotFound(host) from None
    return [str(sockaddr[0]) for *_, sockaddr in found]


# How names become addresses; tests swap in one that needs no network.
resolver: Callable[[str, int], list[str]] = system_resolver


@dataclass(frozen=True)
class AddressGuard:
    allowed: tuple[IpNetwork, ...] = ()

    @classmethod
    def allowing(cls, *networks: str) -> AddressGuard:
        return cls(parse_networks(",".join(networks)))

    def permits(self, address: IpAddress) -> bool:
        plain = (
            address.ipv4_mapped
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped
            else address
        )
        if any(plain in network for network in self.allowed if network.version == plain.version):
            return True
        return not is_internal(address)

    def resolve(self, host: str, port: int) -> str:
        """The address to connect to: every address the host resolves to must be permitted."""
        addresses = self.addresses(host, port)
        for address in addresses:
            if not self.permits(address):
                raise AddressNotAllowed(host, str(address))
        return str(addresses[0])

    @staticmethod
    def addresses(host: str, port: int) -> list[IpAddress]:
        unique: dict[str, IpAddress] = {}
        for text in resolver(host.strip("[]"), port):
            text = text.split("%", 1)[0]  # a zone index (fe80::1%eth0) is not part of the address
            unique.setdefault(text, ipaddress.ip_address(text))
        if not unique:
            raise HostNotFound(host)
        return list(unique.values())

    def check_host(self, host: str) -> str | None:
        """At save time: None when fine, 'unresolved' when the name does not resolve (a warning),
        else raises AddressNotAllowed."""
        try:
            self.resolve(host, 25)
        except HostNotFound:
            return "unresolved"
        return None


def networks_text(networks: Iterable[IpNetwork]) -> str:
    return ",".join(str(n) for n in networks)
