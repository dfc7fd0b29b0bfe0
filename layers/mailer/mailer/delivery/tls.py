"""TLS contexts: system CAs always, plus the operator's extra CA bundle when one is configured."""

from __future__ import annotations

import ssl
from functools import cache


@cache
def client_context(extra_ca_bundle: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if extra_ca_bundle:
        context.load_verify_locations(cafile=extra_ca_bundle)
    return context
