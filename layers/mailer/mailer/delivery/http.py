"""HTTPS for the mail APIs and OAuth endpoints, on urllib3 (already in the runtime through botocore).

TLS is verified with the same trust as SMTP (system CAs plus MAILER_EXTRA_CA_BUNDLE). Plain http is
refused except on a loopback host, where the local stack and the tests run their endpoints.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import urllib3

from mailer.delivery.tls import client_context


def is_loopback_host(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_safe_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and is_loopback_host(parts.hostname):
        return url
    raise ValueError(f"must be an https URL (http only on a loopback host), not {url!r}")


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes = field(repr=False)

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class HttpError(Exception):
    """No answer: the connection could not be made, TLS failed, or the server did not answer in time."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind  # dns | connection_refused | timeout | tls_handshake | certificate | connection_lost


@cache
def _pool(extra_ca_bundle: str | None) -> urllib3.PoolManager:
    return urllib3.PoolManager(ssl_context=client_context(extra_ca_bundle), retries=False, num_pools=8)


def request(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    extra_ca_bundle: str | None = None,
) -> HttpReply:
    require_safe_url(url)
    try:
        reply = _pool(extra_ca_bundle).request(
            method, url, body=body, headers=headers or {}, timeout=timeout, redirect=False
        )
    except urllib3.exceptions.HTTPError as exc:
        raise HttpError(_kind(exc), f"{type(exc).__name__}") from None
    return HttpReply(reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.data)


def _kind(exc: urllib3.exceptions.HTTPError) -> str:
    reason = getattr(exc, "reason", None) or exc
    text = f"{type(reason).__name__} {reason}".lower()
    if isinstance(exc, urllib3.exceptions.SSLError) or "ssl" in text:
        return "certificate" if "certificate" in text else "tls_handshake"
    if isinstance(exc, urllib3.exceptions.TimeoutError) or "timed out" in text:
        return "timeout"
    if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
        return "dns"
    if "refused" in text:
        return "connection_refused"
    return "connection_lost"
