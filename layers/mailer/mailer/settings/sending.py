"""The sending pipeline's deliver step: pick the transport for a profile and send through it."""

from __future__ import annotations

import time

from mailer.config import MailerConfig
from mailer.delivery.classify import every_visible_recipient_refused
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.message import OutgoingMessage
from mailer.delivery.transports.base import Delivery, TransportBase
from mailer.delivery.transports.gmail import GmailTransport
from mailer.delivery.transports.graph import GraphTransport
from mailer.delivery.transports.ses import SesTransport
from mailer.delivery.transports.smtp import SmtpServer, SmtpTransport
from mailer.settings.budget import Lease, SendingBudgets
from mailer.settings.models import SettingsView
from mailer.settings.service import SendingProfile
from mailer.settings.tokens import TokenSource


def transport_for(
    settings: SettingsView,
    password: str | None,
    config: MailerConfig,
    tokens: TokenSource | None = None,
    deadline: float | None = None,
) -> TransportBase:
    """The transport a profile sends with; `tokens` for an OAuth profile; `deadline` (monotonic) ends
    the whole conversation, whatever each step's timeout."""
    if settings.transport == "ses":
        # The company's own configuration set, else the stack's, whose events track delivery.
        configuration_set = settings.ses_configuration_set or config.ses_configuration_set
        return SesTransport(region=settings.ses_region, configuration_set=configuration_set)
    if settings.transport in ("microsoft_graph", "gmail_api"):
        assert tokens is not None, "an API transport needs the profile's OAuth tokens"
        api = GraphTransport if settings.transport == "microsoft_graph" else GmailTransport
        transport = api(
            tokens,
            tokens.provider.api_url,
            timeout=config.smtp_timeout_seconds,
            extra_ca_bundle=config.extra_ca_bundle,
        )
        transport.deadline = deadline
        return transport
    assert settings.host and settings.port and settings.security
    return SmtpTransport(
        SmtpServer(settings.host, settings.port, settings.security, settings.username),
        password,
        timeout=config.smtp_timeout_seconds,
        extra_ca_bundle=config.extra_ca_bundle,
        from_email=settings.from_email,
        oauth=tokens,
        guard=config.guard,
        deadline=deadline,
        pipelining=settings.pipelining,
    )


DROP_CATEGORIES = ("connection_lost", "timeout")  # the connection is gone; the next send opens a new one


def open_authenticated(
    profile: SendingProfile, config: MailerConfig, deadline: float | None = None
) -> TransportBase:
    """Open a connection and sign in. If the server refuses a cached password, fetch it again and
    sign in once more: it may have been changed since this container cached it. This is the one
    place where re-authentication happens."""
    password = profile.password()
    transport = transport_for(profile.settings, password, config, profile.tokens, deadline)
    try:
        transport.open()
    except DeliveryFailed as exc:
        if exc.failure.category != "auth_failed" or not profile.password_cached:
            raise
        fresh = profile.password(force_fetch=True)
        if fresh == password:
            raise
        transport = transport_for(profile.settings, fresh, config, profile.tokens, deadline)
        transport.open()
    return transport


class TransportPool:
    """Open connections by sender for one batch: opened on first use, dropped when broken, closed at end.

    With `budgets`, each open connection holds a lease on one of its account's connection slots
    (for `lease_seconds` at most, so a function that dies frees it); opening one more than the
    account allows raises TooManyRequests before any connection is made.
    """

    def __init__(
        self,
        config: MailerConfig,
        deadline: float | None = None,
        budgets: SendingBudgets | None = None,
        lease_seconds: float | None = None,
    ) -> None:
        self.config = config
        self.deadline = deadline
        self.budgets = budgets
        self.lease_seconds = lease_seconds or config.send_deadline_seconds + 5
        self._open: dict[str, TransportBase] = {}
        self._leases: dict[str, Lease] = {}

    def send(self, sender_key: str, profile: SendingProfile, message: OutgoingMessage) -> Delivery:
        transport = self._open.get(sender_key)
        if transport is None:
            transport = self._open_new(sender_key, profile)
        try:
            return transport.send(message)
        except DeliveryFailed as exc:
            if exc.failure.category in DROP_CATEGORIES:
                self.drop(sender_key)
            raise

    def _open_new(self, sender_key: str, profile: SendingProfile) -> TransportBase:
        if self.budgets is not None and profile.tenant_id is not None:
            lease = self.budgets.lease(profile.tenant_id, profile.settings, self.lease_seconds)
            if lease is not None:
                self._leases[sender_key] = lease
        try:
            transport = self._open[sender_key] = open_authenticated(profile, self.config, self.deadline)
        except BaseException:
            self._release(sender_key)
            raise
        return transport

    def _release(self, sender_key: str) -> None:
        lease = self._leases.pop(sender_key, None)
        if lease is not None:
            lease.release()

    def drop(self, sender_key: str) -> None:
        transport = self._open.pop(sender_key, None)
        try:
            if transport is not None:
                transport.close()
        finally:
            self._release(sender_key)

    def close(self) -> None:
        for key in list(self._open):
            self.drop(key)

    def __enter__(self) -> TransportPool:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def deliver(
    profile: SendingProfile,
    message: OutgoingMessage,
    config: MailerConfig,
    deadline: float | None = None,
    budgets: SendingBudgets | None = None,
) -> Delivery:
    """Send one message over a connection of its own, over by `deadline` (monotonic) if given.

    With `budgets` (interactive sends), the message is counted against its account's budget first:
    over it, TooManyRequests is raised and nothing is sent."""
    if budgets is not None and profile.tenant_id is not None:
        budgets.take(profile.tenant_id, profile.settings, recipients=len(message.recipients))
    with TransportPool(config, deadline, budgets) as pool:
        return pool.send("single", profile, message)


def send_now(
    profile: SendingProfile,
    message: OutgoingMessage,
    config: MailerConfig,
    budgets: SendingBudgets,
    visible: list[str],
) -> tuple[Delivery | None, Failure | None]:
    """An interactive send (a person waits): within the send deadline and the account's budget (over
    it TooManyRequests, nothing sent). The delivery, and the failure when there is one: the
    server's, or every visible recipient (`visible`: To and Cc) refused."""
    try:
        delivery = deliver(profile, message, config, time.monotonic() + config.send_deadline_seconds, budgets)
    except DeliveryFailed as exc:
        return None, exc.failure
    return delivery, every_visible_recipient_refused(delivery.refused, visible)
