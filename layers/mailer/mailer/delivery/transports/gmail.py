"""Gmail API transport: users.messages.send with the raw message (filed in the Sent folder).

Messages up to 5 MB go as JSON `{"raw": base64url}`; larger ones through the media upload endpoint
as `message/rfc822` (35 MB at most).
"""

from __future__ import annotations

import base64
import json

from mailer.delivery import http
from mailer.delivery.failures import Failure
from mailer.delivery.message import OutgoingMessage
from mailer.delivery.transports.base import AccessTokens
from mailer.delivery.transports.http_api import HttpApiTransport, mime_with_bcc, retry_after

JSON_LIMIT = 5 * 1024 * 1024
THROTTLE_REASONS = {"rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded", "quotaExceeded"}


class GmailTransport(HttpApiTransport):
    def __init__(
        self, tokens: AccessTokens, gmail_url: str, *, timeout: float, extra_ca_bundle: str | None
    ) -> None:
        super().__init__(tokens, timeout=timeout, extra_ca_bundle=extra_ca_bundle)
        self.base = gmail_url.rstrip("/")

    def post(self, message: OutgoingMessage, token: str) -> http.HttpReply:
        raw = mime_with_bcc(message)
        if len(raw) <= JSON_LIMIT:
            body = json.dumps({"raw": base64.urlsafe_b64encode(raw).decode()}).encode()
            return self.request(
                "POST", f"{self.base}/gmail/v1/users/me/messages/send", token, body, "application/json"
            )
        url = f"{self.base}/upload/gmail/v1/users/me/messages/send?uploadType=media"
        return self.request("POST", url, token, raw, "message/rfc822")

    def classify(self, reply: http.HttpReply, message: OutgoingMessage) -> Failure:
        error = (reply.json() or {}).get("error") or {}
        text = str(error.get("message") or "")[:512]
        reasons = {str(e.get("reason")) for e in error.get("errors") or [] if isinstance(e, dict)}
        said = f"{error.get('status') or reply.status}: {text}".strip(": ") or None

        def failure(stage: str, category: str, hint: str, transient: bool = False) -> Failure:
            return Failure(stage, category, hint, transient, smtp_code=reply.status, server_message=said)

        if reply.status == 429 or reasons & THROTTLE_REASONS:
            return failure("data", "throttled", "Gmail is limiting this account." + retry_after(reply), True)
        if reply.status == 401:
            return failure(
                "auth", "auth_failed", "Gmail refused the account's access token; connect it again."
            )
        if reply.status == 403 and "insufficientPermissions" in reasons:
            return failure(
                "auth", "auth_failed", "The Google connection lacks the gmail.send permission; connect again."
            )
        if reply.status == 403:
            return failure(
                "envelope",
                "sender_rejected",
                f"Gmail will not send as {message.envelope_from} for {getattr(self.tokens, 'account', '')}: "
                "add it under Gmail Settings > Accounts > Send mail as, or use the account's own address.",
            )
        if reply.status == 413:
            return failure("data", "message_too_large", "The message is over Gmail's 35 MB limit.")
        if reply.status >= 500:
            return failure(
                "data", "server_unavailable", "The Gmail API is unavailable." + retry_after(reply), True
            )
        return failure("data", "message_rejected", "Gmail refused the message; its answer says why.")
