"""The Django peer of benchmark 1: Django's SMTP backend, configured in-process, trusting the
benchmark's throwaway CA through the one hook it has for that, its `ssl_context`."""

from __future__ import annotations

import ssl
from typing import Any

import django
from django.conf import settings
from django.core.mail.backends.smtp import EmailBackend
from django.utils.functional import cached_property


class TrustingEmailBackend(EmailBackend):
    """Django's SMTP backend trusting an extra CA bundle, as MAILER_EXTRA_CA_BUNDLE does for the project."""

    ca_bundle: str | None = None

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_bundle:
            context.load_verify_locations(cafile=self.ca_bundle)
        return context


def backend(host: str, port: int, username: str, password: str, ca_bundle: str) -> Any:
    """Django's `mailers["default"]` from its MAILERS setting (Django 6.1; the EMAIL_* settings are
    deprecated there and create the same backend)."""
    TrustingEmailBackend.ca_bundle = ca_bundle
    if not settings.configured:
        settings.configure(
            MAILERS={
                "default": {
                    "BACKEND": f"{__name__}.TrustingEmailBackend",
                    "OPTIONS": {
                        "host": host,
                        "port": port,
                        "username": username,
                        "password": password,
                        "use_tls": True,
                        "timeout": 15,
                    },
                }
            },
        )
        django.setup()
    from django.core.mail import mailers

    return mailers["default"]
