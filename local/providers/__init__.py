"""Loopback servers shaped like the mail providers' documented APIs, for the tests and the local stack.

- `oauth_server.OAuthServer`: the authorization server, as the Microsoft identity platform (v2) or
  as Google (authorize, token, revoke, userinfo).
- `graph_server.GraphServer`: Microsoft Graph's /me, sendMail (MIME), drafts and upload sessions.
- `gmail_server.GmailServer`: the Gmail API's users.messages.send, plain and by media upload.
- `xoauth2_smtp.XOAuth2SmtpServer`: SMTP submission with STARTTLS and AUTH XOAUTH2.

They share one `TokenRegistry`: what an authorization server issued is what the others accept.
`Providers` starts the whole set and answers, with `env()`, the settings the app reads to find them.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from local.providers.gmail_server import GmailServer
from local.providers.graph_server import GraphServer
from local.providers.mailbox import DeliveredMessage
from local.providers.oauth_server import (
    DEFAULT_ACCOUNT,
    GOOGLE_CLIENT_ID,
    GOOGLE_CLIENT_SECRET,
    MICROSOFT_CLIENT_ID,
    MICROSOFT_CLIENT_SECRET,
    OAuthClient,
    OAuthServer,
    s256,
)
from local.providers.tokens import TokenRegistry
from local.providers.xoauth2_smtp import XOAuth2SmtpServer, xoauth2_string

__all__ = [
    "DEFAULT_ACCOUNT",
    "DeliveredMessage",
    "GmailServer",
    "GraphServer",
    "OAuthClient",
    "OAuthServer",
    "Providers",
    "TokenRegistry",
    "XOAuth2SmtpServer",
    "s256",
    "xoauth2_string",
]


@dataclass
class Providers:
    """Both providers at once: two authorization servers, Graph, Gmail and two XOAUTH2 SMTP servers.

    The servers exist as soon as the bundle does, so a test can adjust them before `start()`;
    `smtp_context` is the server-side TLS context for STARTTLS, `http_context` (optional) puts the
    HTTP servers behind TLS too.
    """

    smtp_context: ssl.SSLContext
    account: str = DEFAULT_ACCOUNT
    aliases: Iterable[str] = ()
    http_context: ssl.SSLContext | None = None
    tenant: str = "common"
    microsoft_client: OAuthClient = field(
        default_factory=lambda: OAuthClient(MICROSOFT_CLIENT_ID, MICROSOFT_CLIENT_SECRET)
    )
    google_client: OAuthClient = field(
        default_factory=lambda: OAuthClient(GOOGLE_CLIENT_ID, GOOGLE_CLIENT_SECRET)
    )
    registry: TokenRegistry = field(default_factory=TokenRegistry)

    def __post_init__(self) -> None:
        aliases = tuple(self.aliases)
        self.aliases = aliases
        self.microsoft = OAuthServer(
            self.registry,
            flavor="microsoft",
            clients=[self.microsoft_client],
            account=self.account,
            tenant=self.tenant,
            ssl_context=self.http_context,
        )
        self.google = OAuthServer(
            self.registry,
            flavor="google",
            clients=[self.google_client],
            account=self.account,
            ssl_context=self.http_context,
        )
        self.graph = GraphServer(self.registry, aliases=aliases, ssl_context=self.http_context)
        self.gmail = GmailServer(self.registry, aliases=aliases, ssl_context=self.http_context)
        self.microsoft_smtp = XOAuth2SmtpServer(
            self.registry, server_context=self.smtp_context, flavor="microsoft", aliases=aliases
        )
        self.google_smtp = XOAuth2SmtpServer(
            self.registry, server_context=self.smtp_context, flavor="google", aliases=aliases
        )

    @property
    def servers(self) -> list[OAuthServer | GraphServer | GmailServer | XOAuth2SmtpServer]:
        return [self.microsoft, self.google, self.graph, self.gmail, self.microsoft_smtp, self.google_smtp]

    def start(self) -> Self:
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in reversed(self.servers):
            server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """Where the app finds each provider endpoint, under the names of the settings it reads.

        MICROSOFT_GRAPH_URL and GMAIL_API_URL are host roots, like `https://graph.microsoft.com` and
        `https://gmail.googleapis.com`: the app appends `/v1.0/me/sendMail`, `/gmail/v1/...` or
        `/upload/gmail/v1/...`. The SMTP ones are `host:port`.
        """
        return {
            "OAUTH_MICROSOFT_AUTHORIZE_URL": self.microsoft.authorize_url,
            "OAUTH_MICROSOFT_TOKEN_URL": self.microsoft.token_url,
            "MICROSOFT_GRAPH_URL": self.graph.url,
            "OAUTH_MICROSOFT_SMTP": self.microsoft_smtp.address,
            "OAUTH_GOOGLE_AUTHORIZE_URL": self.google.authorize_url,
            "OAUTH_GOOGLE_TOKEN_URL": self.google.token_url,
            "OAUTH_GOOGLE_REVOKE_URL": self.google.revoke_url,
            "OAUTH_GOOGLE_USERINFO_URL": self.google.userinfo_url,
            "GMAIL_API_URL": self.gmail.base_url,
            "OAUTH_GOOGLE_SMTP": self.google_smtp.address,
        }

    def client_env(self) -> dict[str, str]:
        """The app registrations the local authorization servers know, for the app's client settings."""
        return {
            "OAUTH_MICROSOFT_CLIENT_ID": self.microsoft_client.client_id,
            "OAUTH_MICROSOFT_CLIENT_SECRET": self.microsoft_client.client_secret or "",
            "OAUTH_GOOGLE_CLIENT_ID": self.google_client.client_id,
            "OAUTH_GOOGLE_CLIENT_SECRET": self.google_client.client_secret or "",
        }

    @property
    def messages(self) -> list[DeliveredMessage]:
        """Everything any of the providers accepted, in the order each server received it."""
        return [
            *self.graph.messages,
            *self.gmail.messages,
            *self.microsoft_smtp.messages,
            *self.google_smtp.messages,
        ]
