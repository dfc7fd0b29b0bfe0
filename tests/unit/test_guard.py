"""The address guard's decisions, on addresses alone (no lookup, no connection)."""

from __future__ import annotations

import ipaddress

import pytest

from mailer.delivery.guard import AddressGuard, AddressNotAllowed, parse_networks


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.2",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",  # noqa: S104 - an address to refuse, never bound
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "::",
        "ff02::1",
        "::ffff:127.0.0.2",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
    ],
)
def test_internal_addresses_are_not_permitted(address):
    assert AddressGuard().permits(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize("address", ["52.96.0.10", "2603:1036::1", "::ffff:52.96.0.10"])
def test_public_addresses_are_permitted(address):
    assert AddressGuard().permits(ipaddress.ip_address(address)) is True


def test_an_admitted_network_is_permitted_and_only_it():
    guard = AddressGuard.allowing("127.0.0.1/32", "::1/128")

    assert guard.permits(ipaddress.ip_address("127.0.0.1")) and guard.permits(ipaddress.ip_address("::1"))
    assert not guard.permits(ipaddress.ip_address("127.0.0.2"))
    assert guard.permits(ipaddress.ip_address("::ffff:127.0.0.1"))


def test_every_address_a_name_resolves_to_must_be_permitted(monkeypatch):
    from mailer.delivery import guard as module

    monkeypatch.setattr(module, "resolver", lambda host, port: ["52.96.0.10", "10.0.0.7"])

    with pytest.raises(AddressNotAllowed) as refused:
        AddressGuard().resolve("mixed.public.test", 25)

    assert refused.value.address == "10.0.0.7"


def test_the_checked_address_is_the_one_to_connect_to(monkeypatch):
    from mailer.delivery import guard as module

    monkeypatch.setattr(module, "resolver", lambda host, port: ["52.96.0.10"])

    assert AddressGuard().resolve("smtp.public.test", 587) == "52.96.0.10"


def test_a_bad_network_is_named():
    with pytest.raises(ValueError, match=r"10\.0\.0/33"):
        parse_networks("127.0.0.1/32, 10.0.0/33")
