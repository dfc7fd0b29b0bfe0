"""Microsoft Graph transport: the MIME message, base64, to /me/sendMail (filed in Sent Items).

Graph takes at most 4 MB in one request, base64 included (about 3 MB of message). Larger messages
need a draft and an upload session per attachment, and creating a draft needs the Mail.ReadWrite
permission, which this app does not ask for (it asks for Mail.Send and User.Read only): such a
message is refused before sending, with a hint to use the SMTP connection, which takes 35 MB.
"""

from __future__ import annotations

import base64

from mailer.delivery import http
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.message import OutgoingMessage
from mailer.delivery.transports.base import AccessTokens
from mailer.delivery.transports.http_api import HttpApiTransport, mime_with_bcc, retry_after

SEND_MAIL_LIMIT = 4 * 1024 * 1024  # bytes of request body Graph takes in one call


def too_large_for_graph(size: int) -> Failure:
    return Failure(
        stage="data",
        category="message_too_large",
        transient=False,
        hint=f"Microsoft Graph takes messages up to 4 MB in one request; this one is {size // 1024} KB once "
        "encoded. Connect the account with transport smtp (SMTP AUTH XOAUTH2, up to 35 MB) to send "
        "larger attachments.",
    )


class GraphTransport(HttpApiTransport):
    def __init__(
        self, tokens: AccessTokens, graph_url: str, *, timeout: float, extra_ca_bundle: str | None
    ) -> None:
        super().__init__(tokens, timeout=timeout, extra_ca_bundle=extra_ca_bundle)
        self.base = graph_url.rstrip("/") + "/v1.0/me"

    def post(self, message: OutgoingMessage, token: str) -> http.HttpReply:
        body = base64.b64encode(mime_with_bcc(message))
        if len(body) > SEND_MAIL_LIMIT:
            raise DeliveryFailed(too_large_for_graph(len(body)))
        return self.request("POST", f"{self.base}/sendMail", token, body, "text/plain")

    def classify(self, reply: http.HttpReply, message: OutgoingMessage) -> Failure:
        error = (reply.json() or {}).get("error") or {}
        code, text = str(error.get("code") or ""), str(error.get("message") or "")[:512]
        said = f"{code}: {text}".strip(": ") or None

        def failure(stage: str, category: str, hint: str, transient: bool = False) -> Failure:
            return Failure(stage, category, hint, transient, smtp_code=reply.status, server_message=said)

        if code == "ErrorSendAsDenied" or (reply.status == 403 and "sendas" in code.lower()):
            return failure(
                "envelope",
                "sender_rejected",
                f"The connected account {getattr(self.tokens, 'account', '')} may not send as "
                f"{message.envelope_from}. Use the account's own address, or have an Exchange admin "
                "grant it Send As on that mailbox.",
            )
        if reply.status == 401:
            return failure(
                "auth", "auth_failed", "Microsoft Graph refused the account's access token; connect it again."
            )
        if reply.status == 403:
            return failure(
                "auth",
                "auth_failed",
                "Microsoft Graph refused to send for this account (Mail.Send not granted, or no "
                "Exchange Online mailbox). Connect it again and accept the permissions.",
            )
        if reply.status == 413:
            return failure(
                "data", "message_too_large", "The message is too large for Microsoft 365 (150 MB)."
            )
        if reply.status == 429:
            return failure(
                "data", "throttled", "Microsoft 365 is limiting this mailbox." + retry_after(reply), True
            )
        if reply.status >= 500:
            return failure(
                "data", "server_unavailable", "Microsoft Graph is unavailable." + retry_after(reply), True
            )
        return failure(
            "data", "message_rejected", "Microsoft Graph refused the message; its answer says why."
        )
