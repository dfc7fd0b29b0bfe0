"""The Gmail API on loopback: sending mail the way `https://gmail.googleapis.com` takes it.

What it imitates (Gmail API reference users.messages.send, the "Uploading attachments" guide,
users.getProfile, users.settings.sendAs.list, and the Google APIs error format):

- `POST /gmail/v1/users/{userId}/messages/send` with JSON `{"raw": <base64url RFC 822 message>}`
  (optionally `threadId`): 200 with the Message resource `{"id", "threadId", "labelIds": ["SENT"]}`.
  As Google's JSON mapping of bytes does, `raw` may be base64url or standard base64, padded or not.
- `POST /upload/gmail/v1/users/{userId}/messages/send?uploadType=media` with
  `Content-Type: message/rfc822` and the message bytes as the body, or `uploadType=multipart` with
  a multipart/related body (JSON metadata, then the message/rfc822 part). Resumable uploads are not
  modelled. The upload endpoint takes messages up to 35 MB (`max_message_bytes`).
- `GET /gmail/v1/users/{userId}/profile` -> `{"emailAddress", "messagesTotal", "threadsTotal",
  "historyId"}`, and `GET /gmail/v1/users/{userId}/settings/sendAs` -> the primary address and the
  aliases as verified send-as addresses.
- `userId` is `me` or the token's own address; another address is 403 "Delegation denied".
- The scopes Google documents per method are checked: sending needs one of gmail.send,
  gmail.compose, gmail.modify or https://mail.google.com/; reading the profile or the send-as list
  needs more than gmail.send (gmail.readonly, gmail.modify, ...).

Errors have Google's JSON body, `{"error": {"code", "message", "errors": [{"message", "domain",
"reason"}], "status"}}`: 401 `UNAUTHENTICATED` with reason `required` (no token) or `authError`
(unknown, expired or revoked token); 403 `PERMISSION_DENIED` with `insufficientPermissions`
(scopes), or `forbidden` when userId or the message's From is not the account or one of `aliases`
(real Gmail silently rewrites an unverified From to the account instead: `from_policy="rewrite"`
does that); 400 `INVALID_ARGUMENT` (`invalidArgument`) for a missing or undecodable raw message or
one without recipients; 413 for a message over the limit; 429 `RESOURCE_EXHAUSTED` with reason
`rateLimitExceeded` after `throttle_next()`; 503 `UNAVAILABLE` (`backendError`) after `fail_next()`.

Every accepted message is kept in `messages` (and `sent_items`) with its raw bytes and the message
parsed with `email.policy.default`.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.parser import BytesHeaderParser
from email.utils import formataddr, getaddresses
from typing import Any, Literal
from urllib.parse import unquote

from local.providers._http import LoopbackHttpServer, Reply, Request
from local.providers.mailbox import (
    DeliveredMessage,
    Mailbox,
    header_recipients,
    may_send_as,
    parse,
    sender_addresses,
)
from local.providers.tokens import AccessToken, TokenRegistry

MB = 1024 * 1024
MAIL = "https://mail.google.com/"
GMAIL = "https://www.googleapis.com/auth/gmail."
SEND_SCOPES = (MAIL, f"{GMAIL}modify", f"{GMAIL}compose", f"{GMAIL}send")
PROFILE_SCOPES = (MAIL, f"{GMAIL}modify", f"{GMAIL}compose", f"{GMAIL}readonly", f"{GMAIL}metadata")
SEND_AS_SCOPES = (MAIL, f"{GMAIL}modify", f"{GMAIL}readonly", f"{GMAIL}settings.basic")

_SEND = re.compile(r"^/gmail/v1/users/(?P<user>[^/]+)/messages/send$")
_UPLOAD_SEND = re.compile(r"^/upload/gmail/v1/users/(?P<user>[^/]+)/messages/send$")
_PROFILE = re.compile(r"^/gmail/v1/users/(?P<user>[^/]+)/profile$")
_SEND_AS = re.compile(r"^/gmail/v1/users/(?P<user>[^/]+)/settings/sendAs$")
_CREDENTIALS_HELP = (
    "Expected OAuth 2 access token, login cookie or other valid authentication credential. "
    "See https://developers.google.com/identity/sign-in/web/devconsole-project."
)
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


@dataclass(frozen=True)
class GmailCall:
    method: str
    path: str
    status: int
    reason: str | None = None


class GoogleError(Exception):
    def __init__(
        self,
        code: int,
        message: str,
        reason: str,
        *,
        domain: str = "global",
        headers: Iterable[tuple[str, str]] = (),
        location: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.reason, self.domain = code, message, reason, domain
        self.headers = list(headers)
        self.location = location

    def body(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"message": self.message, "domain": self.domain, "reason": self.reason}
        if self.location:
            detail.update(location=self.location, locationType="header")
        if self.reason == "authError":
            detail["message"] = "Invalid Credentials"
        elif self.reason == "required":
            detail["message"] = "Login Required."
        elif self.reason == "insufficientPermissions":
            detail["message"] = "Insufficient Permission"
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "errors": [detail],
                "status": _STATUS.get(self.code, "UNKNOWN"),
            }
        }


class GmailServer(LoopbackHttpServer):
    """Gmail's sending endpoints; see the module docstring for what it does."""

    def __init__(
        self,
        registry: TokenRegistry,
        *,
        aliases: Iterable[str] = (),
        from_policy: Literal["reject", "rewrite"] = "reject",
        max_message_bytes: int = 35 * MB,
        max_request_bytes: int = 50 * MB,
        enforce_scopes: bool = True,
        issuer: str = "google",
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, port=port, ssl_context=ssl_context)
        self.name = "gmail"
        self.registry = registry
        self.aliases: set[str] = {a.lower() for a in aliases}
        self.from_policy = from_policy
        self.max_message_bytes = max_message_bytes
        self.max_request_bytes = max_request_bytes
        self.enforce_scopes = enforce_scopes
        self.issuer = issuer
        self.mailbox = Mailbox()
        self.calls: list[GmailCall] = []
        self._injected: list[tuple[int, int | None]] = []
        self._state = threading.Lock()
        self._history = 1000

    @property
    def messages(self) -> list[DeliveredMessage]:
        return self.mailbox.delivered

    @property
    def sent_items(self) -> list[DeliveredMessage]:
        return self.mailbox.sent_items

    @property
    def base_url(self) -> str:
        """The `https://gmail.googleapis.com` of here: `/gmail/v1/...` and `/upload/gmail/v1/...` follow."""
        return self.url

    # --- controls ----------------------------------------------------------------------------------

    def throttle_next(self, retry_after: int | None = 2, *, times: int = 1) -> None:
        """The next `times` requests answer 429 rateLimitExceeded (with Retry-After when given)."""
        with self._state:
            self._injected.extend([(429, retry_after)] * times)

    def fail_next(self, status: int = 503, *, times: int = 1, retry_after: int | None = None) -> None:
        """The next `times` requests answer `status` with reason backendError."""
        with self._state:
            self._injected.extend([(status, retry_after)] * times)

    # --- routing -----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        try:
            reply = self._route(request)
            reason = None
        except GoogleError as error:
            headers = [*error.headers]
            if error.code == 401:
                headers.append(
                    ("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/", error="invalid_token"')
                )
            if error.reason == "insufficientPermissions":
                headers.append(
                    (
                        "WWW-Authenticate",
                        'Bearer realm="https://accounts.google.com/", error="insufficient_scope"',
                    )
                )
            reply = Reply.json(error.code, error.body(), headers)
            reason = error.reason
        with self._state:
            self.calls.append(GmailCall(request.method, request.path, reply.status, reason))
        return reply

    def _route(self, request: Request) -> Reply:
        with self._state:
            injected = self._injected.pop(0) if self._injected else None
        if injected is not None:
            self._raise_injected(*injected)
        if request.too_large:
            raise GoogleError(
                413,
                f"Request payload size exceeds the limit: {self.max_request_bytes} bytes.",
                "uploadTooLarge",
            )
        for pattern, method, action in (
            (_SEND, "POST", self._send_json),
            (_UPLOAD_SEND, "POST", self._send_upload),
            (_PROFILE, "GET", self._profile),
            (_SEND_AS, "GET", self._send_as),
        ):
            match = pattern.match(request.path)
            if match:
                if request.method != method:
                    raise GoogleError(
                        405, f"Method {request.method} is not allowed here.", "httpMethodNotAllowed"
                    )
                token = self._authenticate(request)
                account = self._resolve_user(token, unquote(match["user"]))
                return action(request, token, account)
        raise GoogleError(404, "Requested entity was not found.", "notFound")

    def _raise_injected(self, status: int, retry_after: int | None) -> None:
        headers = [("Retry-After", str(retry_after))] if retry_after is not None else []
        if status == 429:
            when = datetime.now(UTC) + timedelta(seconds=retry_after or 1)
            message = f"User-rate limit exceeded.  Retry after {when.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z"
            raise GoogleError(429, message, "rateLimitExceeded", domain="usageLimits", headers=headers)
        message = "The service is currently unavailable." if status == 503 else "Internal error encountered."
        raise GoogleError(status, message, "backendError", headers=headers)

    # --- authentication ----------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> AccessToken:
        raw = request.bearer()
        if raw is None:
            raise GoogleError(
                401,
                f"Request is missing required authentication credential. {_CREDENTIALS_HELP}",
                "required",
                location="Authorization",
            )
        token = self.registry.lookup(raw)
        if token is None or token.issuer != self.issuer or token.account is None:
            raise GoogleError(
                401,
                f"Request had invalid authentication credentials. {_CREDENTIALS_HELP}",
                "authError",
                location="Authorization",
            )
        return token

    def _require(self, token: AccessToken, scopes: Iterable[str]) -> None:
        if self.enforce_scopes and not token.has_any_scope(scopes):
            raise GoogleError(
                403, "Request had insufficient authentication scopes.", "insufficientPermissions"
            )

    def _resolve_user(self, token: AccessToken, user: str) -> str:
        assert token.account is not None
        if user == "me" or user.lower() == token.account.lower():
            return token.account
        raise GoogleError(403, f"Delegation denied for {token.account}", "forbidden")

    # --- sending -----------------------------------------------------------------------------------

    def _send_json(self, request: Request, token: AccessToken, account: str) -> Reply:
        self._require(token, SEND_SCOPES)
        try:
            body = request.json() if request.body else {}
        except (ValueError, UnicodeDecodeError) as error:
            raise GoogleError(400, "Invalid JSON payload received.", "parseError") from error
        if not isinstance(body, dict) or not body.get("raw"):
            raise GoogleError(
                400,
                "'raw' RFC822 payload message string or uploading message via /upload/* URL required",
                "invalidArgument",
            )
        raw = _decode_bytes(str(body["raw"]))
        return self._deliver(raw, account, via="gmail.send", thread_id=body.get("threadId"))

    def _send_upload(self, request: Request, token: AccessToken, account: str) -> Reply:
        self._require(token, SEND_SCOPES)
        upload_type = request.arg("uploadType", "")
        metadata: dict[str, Any] = {}
        if upload_type == "media":
            if request.content_type != "message/rfc822":
                raise GoogleError(
                    400,
                    f"Media type '{request.content_type}' is not supported. Valid media types: [message/*]",
                    "badContent",
                )
            raw = request.body
        elif upload_type == "multipart":
            metadata, raw = self._multipart(request)
        else:
            raise GoogleError(
                400,
                f"Upload type '{upload_type}' is not modelled here: use media or multipart.",
                "invalidArgument",
            )
        if not raw.strip():
            raise GoogleError(400, "Recipient address required", "invalidArgument")
        return self._deliver(raw, account, via="gmail.upload", thread_id=metadata.get("threadId"))

    def _multipart(self, request: Request) -> tuple[dict[str, Any], bytes]:
        if request.content_type != "multipart/related":
            raise GoogleError(400, "A multipart upload must be multipart/related.", "badContent")
        parts = _related_parts(request.body, request.header("Content-Type"))
        if len(parts) != 2:
            raise GoogleError(400, "A multipart upload has a metadata part and a media part.", "badContent")
        (meta_type, meta_body), (media_type, media_body) = parts
        try:
            metadata = json.loads(meta_body or b"{}") if "json" in meta_type else {}
        except ValueError as error:
            raise GoogleError(400, "Invalid JSON payload received.", "parseError") from error
        if not media_type.startswith("message/"):
            raise GoogleError(400, f"Media type '{media_type}' is not supported.", "badContent")
        return metadata if isinstance(metadata, dict) else {}, media_body

    def _deliver(self, raw: bytes, account: str, *, via: str, thread_id: Any = None) -> Reply:
        if len(raw) > self.max_message_bytes:
            raise GoogleError(
                413,
                f"Message too large: {len(raw)} bytes, the limit is {self.max_message_bytes}.",
                "uploadTooLarge",
            )
        message = parse(raw)
        recipients = header_recipients(message)
        if not recipients:
            raise GoogleError(400, "Recipient address required", "invalidArgument")
        for address in sender_addresses(message):
            if may_send_as(address, account, self.aliases):
                continue
            if self.from_policy == "rewrite":
                names = getaddresses([str(v) for v in message.get_all("From", [])])
                display = names[0][0] if names else ""
                del message["From"]
                del message["Sender"]
                message["From"] = formataddr((display, account))
                raw = message.as_bytes()
                message = parse(raw)
                break
            raise GoogleError(403, f"Delegation denied for {address}", "forbidden")
        if not sender_addresses(message):
            raw = f"From: {account}\r\n".encode() + raw
            message = parse(raw)
        message_id = secrets.token_hex(8)
        thread = str(thread_id) if thread_id else message_id
        self.mailbox.deliver(
            DeliveredMessage(
                id=message_id, raw=raw, message=message, account=account, via=via, recipients=recipients
            )
        )
        with self._state:
            self._history += 1
        return Reply.json(200, {"id": message_id, "threadId": thread, "labelIds": ["SENT"]})

    # --- reading -----------------------------------------------------------------------------------

    def _profile(self, request: Request, token: AccessToken, account: str) -> Reply:
        self._require(token, PROFILE_SCOPES)
        sent = [m for m in self.messages if m.account.lower() == account.lower()]
        return Reply.json(
            200,
            {
                "emailAddress": account,
                "messagesTotal": len(sent),
                "threadsTotal": len(sent),
                "historyId": str(self._history),
            },
        )

    def _send_as(self, request: Request, token: AccessToken, account: str) -> Reply:
        self._require(token, SEND_AS_SCOPES)
        entries: list[dict[str, Any]] = [
            {"sendAsEmail": account, "displayName": "", "isPrimary": True, "isDefault": True}
        ]
        entries.extend(
            {"sendAsEmail": alias, "displayName": "", "verificationStatus": "accepted"}
            for alias in sorted(self.aliases)
            if alias != account.lower()
        )
        return Reply.json(200, {"sendAs": entries})


def _decode_bytes(value: str) -> bytes:
    """Proto3 JSON bytes: standard or URL-safe base64, with or without padding."""
    compact = "".join(value.split())
    padded = compact + "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except binascii.Error as error:
        raise GoogleError(
            400, "Invalid value at 'message.raw' (TYPE_BYTES), Base64 decoding failed.", "invalidArgument"
        ) from error


def _related_parts(body: bytes, content_type: str) -> list[tuple[str, bytes]]:
    """The parts of a multipart/related body as (media type, bytes), the bytes exactly as sent."""
    header = BytesHeaderParser().parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode())
    boundary = header.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise GoogleError(400, "The multipart body has no boundary.", "badContent")
    delimiter = b"--" + boundary.encode()
    parts: list[tuple[str, bytes]] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        chunk = chunk[2:] if chunk.startswith(b"\r\n") else chunk.lstrip(b"\n")
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            head, sep, content = chunk.partition(b"\n\n")
        headers = BytesHeaderParser().parsebytes(head + b"\r\n\r\n")
        if content.endswith(b"\r\n"):
            content = content[:-2]
        elif content.endswith(b"\n"):
            content = content[:-1]
        if str(headers.get("Content-Transfer-Encoding", "")).strip().lower() == "base64":
            try:
                content = base64.b64decode(b"".join(content.split()), validate=True)
            except binascii.Error as error:
                raise GoogleError(
                    400, "A base64 part of the upload does not decode.", "badContent"
                ) from error
        parts.append((headers.get_content_type(), content))
    return parts
