"""Microsoft Graph transport: the MIME message, base64, to /me/sendMail (filed in Sent Items).

Graph takes at most 4 MB in one request, base64 included (about 3 MB of message). A larger
message goes as Graph documents for large attachments:
1. a draft made from the MIME without its large attachments (`POST /me/messages`);
2. an upload session for each of them (`createUploadSession`), filled in chunks;
3. `POST /me/messages/{id}/send`.
Drafts need the Mail.ReadWrite permission, which the connection asks for for this reason.
"""

from __future__ import annotations

import base64
import json
from copy import deepcopy
from email.message import EmailMessage, Message

from mailer.delivery import http
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.message import OutgoingMessage
from mailer.delivery.transports.base import AccessTokens
from mailer.delivery.transports.http_api import HttpApiTransport, mime_with_bcc, retry_after

SEND_MAIL_LIMIT = 4 * 1024 * 1024  # bytes of request body Graph takes in one call
UPLOAD_SESSION_MIN = 3 * 1024 * 1024  # Graph wants an upload session for attachments this large
CHUNK = 10 * 320 * 1024  # upload chunks: a multiple of 320 KiB, under 4 MB


def too_large_for_graph(size: int) -> Failure:
    return Failure(
        stage="data",
        category="message_too_large",
        transient=False,
        hint=f"Microsoft Graph takes messages up to 4 MB in one request; this one is {size // 1024} KB once "
        "encoded. Connect the account with transport smtp (SMTP AUTH XOAUTH2, up to 35 MB) to send "
        "larger attachments.",
    )


def split_large_attachments(message: OutgoingMessage) -> tuple[bytes, list[EmailMessage]]:
    """The MIME (with its Bcc header) without the attachments that need an upload session, and those."""
    copy = deepcopy(message.message)
    large: list[EmailMessage] = []
    if copy.is_multipart():
        parts = copy.get_payload()
        assert isinstance(parts, list)
        kept: list[Message | str] = []
        for part in parts:
            assert isinstance(part, EmailMessage)
            payload = part.get_payload(decode=True)
            size = len(payload) if isinstance(payload, bytes) else 0
            if part.get_content_disposition() == "attachment" and size >= UPLOAD_SESSION_MIN:
                large.append(part)
            else:
                kept.append(part)
        copy.set_payload(kept)
    draft = OutgoingMessage(message=copy, envelope_from=message.envelope_from, recipients=message.recipients)
    return mime_with_bcc(draft), large


class GraphTransport(HttpApiTransport):
    def __init__(
        self, tokens: AccessTokens, graph_url: str, *, timeout: float, extra_ca_bundle: str | None
    ) -> None:
        super().__init__(tokens, timeout=timeout, extra_ca_bundle=extra_ca_bundle)
        self.base = graph_url.rstrip("/") + "/v1.0/me"

    def post(self, message: OutgoingMessage, token: str) -> http.HttpReply:
        body = base64.b64encode(mime_with_bcc(message))
        if len(body) <= SEND_MAIL_LIMIT:
            return self.request("POST", f"{self.base}/sendMail", token, body, "text/plain")
        return self._send_as_draft(message, token)

    def _send_as_draft(self, message: OutgoingMessage, token: str) -> http.HttpReply:
        draft_mime, large = split_large_attachments(message)
        body = base64.b64encode(draft_mime)
        if len(body) > SEND_MAIL_LIMIT:
            raise DeliveryFailed(too_large_for_graph(len(body)))
        draft = self.request("POST", f"{self.base}/messages", token, body, "text/plain")
        draft_id = (draft.json() or {}).get("id") if draft.status == 201 else None
        if not draft_id:
            return draft
        for attachment in large:
            failed = self._upload(draft_id, attachment, token)
            if failed is not None:
                return failed
        return self.request("POST", f"{self.base}/messages/{draft_id}/send", token, b"", "application/json")

    def _upload(self, draft_id: str, part: EmailMessage, token: str) -> http.HttpReply | None:
        """One attachment through an upload session; the failing answer, or None."""
        content = part.get_content()
        data = content if isinstance(content, bytes) else str(content).encode()
        item = {
            "attachmentType": "file",
            "name": part.get_filename() or "attachment",
            "size": len(data),
            "contentType": part.get_content_type(),
        }
        session = self.request(
            "POST",
            f"{self.base}/messages/{draft_id}/attachments/createUploadSession",
            token,
            json.dumps({"AttachmentItem": item}).encode(),
            "application/json",
        )
        upload_url = (session.json() or {}).get("uploadUrl") if session.status == 201 else None
        if not upload_url:
            return session
        for start in range(0, len(data), CHUNK):
            chunk = data[start : start + CHUNK]
            headers = {
                "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{len(data)}",
                "Content-Type": "application/octet-stream",
            }
            # The upload URL carries its own authorisation: no bearer token goes with it.
            reply = http.request(
                "PUT",
                upload_url,
                body=chunk,
                headers=headers,
                timeout=self._left(),
                extra_ca_bundle=self.extra_ca_bundle,
            )
            if reply.status >= 300:
                return reply
        return None

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
