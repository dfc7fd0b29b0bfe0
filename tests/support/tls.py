"""Throwaway TLS material for loopback servers (trustme)."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


def server_context(ca: trustme.CA, *names: str) -> ssl.SSLContext:
    """A server-side context with a certificate from `ca` for `names`."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


def write_ca_bundle(ca: trustme.CA, path: Path) -> Path:
    """The CA certificate as a PEM file, as an operator gives it in MAILER_EXTRA_CA_BUNDLE."""
    ca.cert_pem.write_to_path(str(path))
    return path
