"""The sending pipeline's deliver step: pick the transport for a profile and send through it."""

from __future__ import annotations

from mailer.config import MailerConfig
from mailer.delivery.failures import DeliveryFailed
from mailer.delivery.message import OutgoingMessage
from mailer.delivery.transports.base import Delivery, TransportBase
from mailer.delivery.transports.ses import SesTransport
from mailer.delivery.transports.smtp import SmtpServer, SmtpTransport
from mailer.settings.models import SettingsView
from mailer.settings.service import SendingProfile


def transport_for(settings: SettingsView, password: str | None, config: MailerConfig) -> TransportBase:
    if settings.transport == "ses":
        return SesTransport(region=settings.ses_region, configuration_set=settings.ses_configuration_set)
    assert settings.host and settings.port and settings.security
    return SmtpTransport(
        SmtpServer(settings.host, settings.port, settings.security, settings.username),
        password,
        timeout=config.smtp_timeout_seconds,
        extra_ca_bundle=config.extra_ca_bundle,
        from_email=settings.from_email,
    )


def deliver(profile: SendingProfile, message: OutgoingMessage, config: MailerConfig) -> Delivery:
    """Send one message. If the server refuses a cached password, fetch it again and retry once:
    the password may have been changed since this container cached it."""
    password = profile.password()
    try:
        with transport_for(profile.settings, password, config) as transport:
            return transport.send(message)
    except DeliveryFailed as exc:
        if exc.failure.category != "auth_failed" or not profile.password_cached:
            raise
        fresh = profile.password(force_fetch=True)
        if fresh == password:
            raise
    with transport_for(profile.settings, fresh, config) as transport:
        return transport.send(message)
