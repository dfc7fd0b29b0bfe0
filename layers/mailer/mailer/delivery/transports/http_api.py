"""What the Graph and Gmail transports share: a bearer token renewed once when refused, the MIME
with its BCC header (the APIs read recipients from the message), and failures classified."""

from __future__ import annotations

import time

from mailer.delivery import http
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.message import OutgoingMessage
from mailer.delivery.transports.base import AccessTokens, Delivery, TransportBase

_CONNECT_CATEGORIES = {
    "dns": ("connect", "The mail API's address does not resolve; check the network and the URL."),
    "connection_refused": ("connect", "Nothing answered at the mail API's address."),
    "timeout": ("connect", "The mail API did not answer in time; it is tried again shortly."),
    "tls_handshake": ("tls", "TLS with the mail API failed."),
    "certificate": ("tls", "The mail API's certificate is not trusted."),
    "connection_lost": ("connect", "The connection to the mail API was lost; it is tried again shortly."),
}


def mime_with_bcc(message: OutgoingMessage) -> bytes:
    """The message as the API must receive it: BCC recipients in a Bcc header, which the provider
    removes before delivery. The SMTP path keeps them in the envelope only."""
    visible = {
        a.addr_spec.casefold() for h in ("To", "Cc") for a in getattr(message.message[h], "addresses", ())
    }
    hidden = [r for r in message.recipients if r.casefold() not in visible]
    raw = message.as_bytes()
    return (b"Bcc: " + ", ".join(hidden).encode() + b"\r\n" + raw) if hidden else raw


def connection_failure(exc: http.HttpError) -> Failure:
    stage, hint = _CONNECT_CATEGORIES.get(exc.kind, _CONNECT_CATEGORIES["connection_lost"])
    return Failure(
        stage=stage,
        category=exc.kind,
        transient=exc.kind in ("timeout", "connection_lost"),
        hint=hint,
    )


def retry_after(reply: http.HttpReply) -> str:
    value = reply.header("retry-after")
    return f" Retry after {value} s." if value and value.isdigit() else ""


class HttpApiTransport(TransportBase):
    """A mail API over HTTPS: stateless, so open and close do nothing."""

    def __init__(self, tokens: AccessTokens, *, timeout: float, extra_ca_bundle: str | None) -> None:
        self.tokens = tokens
        self.timeout = timeout
        self.deadline: float | None = None  # time.monotonic() by which a send must be over
        self.extra_ca_bundle = extra_ca_bundle

    def open(self) -> None:
        """Nothing to open; the first send gets (or renews) the access token."""

    def close(self) -> None:
        pass

    def send(self, message: OutgoingMessage) -> Delivery:
        reply = self._post(message, self.tokens.access_token())
        if reply.status == 401:  # expired early or revoked: renew once, then believe the answer
            reply = self._post(message, self.tokens.access_token(refresh=True))
        if reply.status >= 300:
            raise DeliveryFailed(self.classify(reply, message))
        return Delivery(message_id=message.message_id)

    def _post(self, message: OutgoingMessage, token: str) -> http.HttpReply:
        try:
            return self.post(message, token)
        except http.HttpError as exc:
            raise DeliveryFailed(connection_failure(exc)) from None

    def request(self, method: str, url: str, token: str, body: bytes, content_type: str) -> http.HttpReply:
        return http.request(
            method,
            url,
            body=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": content_type},
            timeout=self._left(),
            extra_ca_bundle=self.extra_ca_bundle,
        )

    def _left(self) -> float:
        if self.deadline is None:
            return self.timeout
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise http.HttpError("timeout", "the send's deadline passed")
        return min(self.timeout, left)

    def post(self, message: OutgoingMessage, token: str) -> http.HttpReply:
        raise NotImplementedError

    def classify(self, reply: http.HttpReply, message: OutgoingMessage) -> Failure:
        raise NotImplementedError
