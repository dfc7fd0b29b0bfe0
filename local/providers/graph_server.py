"""Microsoft Graph on loopback: the mail-sending part of `https://graph.microsoft.com/v1.0`.

What it imitates (Graph v1.0 documentation: user-sendmail, user-post-messages, message-send,
attachment-createuploadsession, "Attach large files to Outlook messages", "Microsoft Graph error
responses and resource types"):

- `GET /v1.0/me` answers the signed-in user: `{"id", "displayName", "mail", "userPrincipalName"}`.
  With an app-only token it is 400, as Graph says "/me request is only valid with delegated
  authentication flow"; `GET /v1.0/users/{id | userPrincipalName}` answers instead.
- `POST /v1.0/me/sendMail` (and `/v1.0/users/{id | userPrincipalName}/sendMail`) with
  `Content-Type: text/plain` and the whole MIME message base64 encoded as the body: 202 Accepted
  with an empty body. A MIME message is always saved to Sent Items. Invalid base64 is 400
  `ErrorMimeContentInvalidBase64String`; a message without recipients is 400
  `ErrorInvalidRecipients`. JSON message bodies are not modelled (400).
- Drafts for larger messages: `POST /v1.0/me/messages` with the base64 MIME as text/plain creates a
  draft (201, the message resource with its `id`); `POST /v1.0/me/messages/{id}/attachments` adds a
  small fileAttachment (JSON, `contentBytes`); `POST /v1.0/me/messages/{id}/attachments/createUploadSession`
  with `{"AttachmentItem": {"attachmentType": "file", "name", "size", "contentType"}}` answers 201
  with an uploadSession (`uploadUrl`, `expirationDateTime`, `nextExpectedRanges: ["0-"]`); the
  pre-authenticated uploadUrl takes `PUT`s with `Content-Range: bytes {start}-{end}/{total}` in
  order, no Authorization header, 200 with the next expected byte until the last one, which is 201
  with a `Location` header; `POST /v1.0/me/messages/{id}/send` sends the draft (202) with its
  attachments. Graph wants an upload session only for attachments of 3 MB and more
  (ErrorAttachmentSizeShouldNotBeLessThanMinimumSize below `upload_session_min_bytes`) and up to
  150 MB; creating drafts and attachments needs Mail.ReadWrite, not only Mail.Send.
- Request size: Graph documents about 4 MB per request (the base64 body counts, so about 3 MB of
  MIME); above `max_request_bytes` the answer is 413 `RequestEntityTooLarge`.
- Errors are Graph's JSON error body, `{"error": {"code", "message", "innerError": {"date",
  "request-id", "client-request-id"}}}`: 401 `InvalidAuthenticationToken` for a missing, unknown,
  expired or revoked bearer token, or one for another audience (a token with only Outlook SMTP
  scopes); 403 `ErrorAccessDenied` when the token lacks the permission (Mail.Send, Mail.ReadWrite,
  User.Read); 403 `ErrorSendAsDenied` when the MIME From (or Sender) is neither the mailbox nor one
  of `aliases`; 404 `ErrorItemNotFound` for an unknown draft; 429 `ApplicationThrottled` with a
  `Retry-After` header after `throttle_next(retry_after=2)`; 503 `ServiceNotAvailable` after
  `fail_next(503)`.

Every accepted message is kept in `messages` (all deliveries) and `sent_items`, with its raw bytes
and the message parsed with `email.policy.default`; `drafts` holds drafts not sent yet.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
import ssl
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any
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
from local.providers.oauth_server import GRAPH_RESOURCE
from local.providers.tokens import AccessToken, TokenRegistry, directory_id

MB = 1024 * 1024
_WHO = r"(?:me|users/(?P<user>[^/]+))"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("GET", re.compile(rf"^/v1\.0/{_WHO}$"), "profile"),
    ("POST", re.compile(rf"^/v1\.0/{_WHO}/sendMail$"), "send_mail"),
    ("POST", re.compile(rf"^/v1\.0/{_WHO}/(?:mailFolders/(?P<folder>[^/]+)/)?messages$"), "create_draft"),
    ("GET", re.compile(rf"^/v1\.0/{_WHO}/mailFolders/(?P<folder>[^/]+)/messages$"), "list_folder"),
    ("POST", re.compile(rf"^/v1\.0/{_WHO}/messages/(?P<id>[^/]+)/send$"), "send_draft"),
    (
        "POST",
        re.compile(rf"^/v1\.0/{_WHO}/messages/(?P<id>[^/]+)/attachments/createUploadSession$"),
        "create_upload_session",
    ),
    ("POST", re.compile(rf"^/v1\.0/{_WHO}/messages/(?P<id>[^/]+)/attachments$"), "add_attachment"),
    ("GET", re.compile(rf"^/v1\.0/{_WHO}/messages/(?P<id>[^/]+)$"), "get_message"),
    ("DELETE", re.compile(rf"^/v1\.0/{_WHO}/messages/(?P<id>[^/]+)$"), "delete_message"),
]
_UPLOAD = re.compile(
    r"^/upload/Users\('(?P<user>[^']+)'\)/Messages\('(?P<id>[^']+)'\)/AttachmentSessions\('(?P<sid>[^']+)'\)$"
)
_CONTENT_RANGE = re.compile(r"^bytes (?P<start>\d+)-(?P<end>\d+)/(?P<total>\d+)$")
_EMAIL = re.compile(r"^[^@\s/]+@[^@\s/]+$")

USER_SCOPES = ("User.Read", "User.ReadWrite", "User.ReadBasic.All", "User.Read.All", "Directory.Read.All")
SEND_SCOPES = ("Mail.Send",)
READWRITE_SCOPES = ("Mail.ReadWrite",)
READ_SCOPES = ("Mail.Read", "Mail.ReadWrite", "Mail.ReadBasic")


@dataclass(frozen=True)
class GraphCall:
    method: str
    path: str
    status: int
    code: str | None = None


@dataclass
class _Attachment:
    id: str
    name: str
    content_type: str
    data: bytes
    is_inline: bool = False
    content_id: str | None = None


@dataclass
class _UploadSession:
    id: str
    draft_id: str
    authtoken: str
    item: _Attachment
    size: int
    expires_at: datetime
    received: bytearray = field(default_factory=bytearray)


@dataclass
class Draft:
    id: str
    account: str
    raw: bytes
    attachments: list[_Attachment] = field(default_factory=list)

    @property
    def message(self) -> EmailMessage:
        return parse(self.raw)

    def final_mime(self) -> bytes:
        """The draft with the attachments added to it, as Exchange sends it."""
        if not self.attachments:
            return self.raw
        message = parse(self.raw)
        for item in self.attachments:
            maintype, _, subtype = (item.content_type or "application/octet-stream").partition("/")
            message.add_attachment(
                item.data,
                maintype=maintype or "application",
                subtype=subtype or "octet-stream",
                filename=item.name,
                disposition="inline" if item.is_inline else "attachment",
                cid=f"<{item.content_id}>" if item.content_id else None,
            )
        return message.as_bytes()


class GraphError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, list(headers)


def _graph_scope(name: str) -> str:
    return name if "://" in name else f"{GRAPH_RESOURCE}/{name}"


def user_id(account: str) -> str:
    """The stable directory id of a mailbox, the `oid` of its ID tokens."""
    return directory_id(account)


class GraphServer(LoopbackHttpServer):
    """Graph's mail endpoints; see the module docstring for what it does."""

    def __init__(
        self,
        registry: TokenRegistry,
        *,
        aliases: Iterable[str] = (),
        mailboxes: Iterable[str] | None = None,
        max_request_bytes: int = 4 * MB,
        max_message_bytes: int = 35 * MB,
        upload_session_min_bytes: int = 3 * MB,
        max_attachment_bytes: int = 150 * MB,
        enforce_scopes: bool = True,
        issuer: str = "microsoft",
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, port=port, ssl_context=ssl_context)
        self.name = "graph"
        self.registry = registry
        self.aliases: set[str] = {a.lower() for a in aliases}
        self.mailboxes = {m.lower() for m in mailboxes} if mailboxes is not None else None
        self.max_request_bytes = max_request_bytes
        self.max_message_bytes = max_message_bytes
        self.upload_session_min_bytes = upload_session_min_bytes
        self.max_attachment_bytes = max_attachment_bytes
        self.enforce_scopes = enforce_scopes
        self.issuer = issuer
        self.mailbox = Mailbox()
        self.drafts: dict[str, Draft] = {}
        self.calls: list[GraphCall] = []
        self._sessions: dict[str, _UploadSession] = {}
        self._known_ids: dict[str, str] = {}
        self._injected: list[tuple[int, int | None]] = []
        self._state = threading.Lock()

    # --- what was sent -----------------------------------------------------------------------------

    @property
    def messages(self) -> list[DeliveredMessage]:
        return self.mailbox.delivered

    @property
    def sent_items(self) -> list[DeliveredMessage]:
        return self.mailbox.sent_items

    @property
    def base_url(self) -> str:
        """What a client puts before `/me/sendMail`: the `https://graph.microsoft.com/v1.0` of here."""
        return f"{self.url}/v1.0"

    # --- controls ----------------------------------------------------------------------------------

    def throttle_next(self, retry_after: int = 2, *, times: int = 1) -> None:
        """The next `times` requests answer 429 with `Retry-After: retry_after`."""
        with self._state:
            self._injected.extend([(429, retry_after)] * times)

    def fail_next(self, status: int = 503, *, times: int = 1, retry_after: int | None = None) -> None:
        """The next `times` requests answer `status` (ServiceNotAvailable for 503)."""
        with self._state:
            self._injected.extend([(status, retry_after)] * times)

    # --- routing -----------------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        try:
            reply = self._route(request)
            code = None
        except GraphError as error:
            reply = self._error_reply(request, error)
            code = error.code
        with self._state:
            self.calls.append(GraphCall(request.method, request.path, reply.status, code))
        return reply

    def _route(self, request: Request) -> Reply:
        with self._state:
            injected = self._injected.pop(0) if self._injected else None
        if injected is not None:
            status, retry_after = injected
            headers = [("Retry-After", str(retry_after))] if retry_after is not None else []
            if status == 429:
                raise GraphError(
                    429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.", headers
                )
            code = "ServiceNotAvailable" if status == 503 else "generalException"
            raise GraphError(
                status, code, "The service is temporarily unavailable. Try again later.", headers
            )
        if request.too_large:
            raise GraphError(
                413,
                "RequestEntityTooLarge",
                f"The request is larger than the {self.max_request_bytes} bytes allowed. Use a draft and an "
                "upload session for large attachments.",
            )
        path = unquote(request.path)
        upload = _UPLOAD.match(path)
        if upload:
            return self._upload(request, upload["user"], upload["sid"])
        for method, pattern, action in _ROUTES:
            match = pattern.match(path)
            if match and request.method == method:
                token = self._authenticate(request)
                account = self._resolve_mailbox(token, match.group("user"))
                return getattr(self, f"_{action}")(request, token, account, match.groupdict())
        if any(pattern.match(path) for _, pattern, _ in _ROUTES):
            raise GraphError(405, "Request_BadRequest", f"The method {request.method} is not allowed here.")
        raise GraphError(
            400, "BadRequest", f"Resource not found for the segment '{path.rsplit('/', 1)[-1]}'."
        )

    # --- authentication ----------------------------------------------------------------------------

    def _authenticate(self, request: Request) -> AccessToken:
        raw = request.bearer()
        if raw is None:
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        token = self.registry.inspect(raw)
        if token is None or token.issuer != self.issuer:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "IDX14100: JWT is not well formed, there are no dots (.). The token needs to be in JWS "
                "or JWE Compact Serialization Format.",
            )
        if token.revoked:
            raise GraphError(401, "InvalidAuthenticationToken", "The access token has been revoked.")
        if token.expires_at <= self.registry.clock():
            raise GraphError(
                401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
            )
        # A token is for one resource: Graph when it has Graph scopes (or only OpenID ones).
        graph = f"{GRAPH_RESOURCE}/"
        for_graph = any(s.lower().startswith(graph) for s in token.scopes)
        elsewhere = any("://" in s and not s.lower().startswith(graph) for s in token.scopes)
        if elsewhere and not for_graph:
            raise GraphError(
                401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            )
        return token

    def _require(self, token: AccessToken, names: Iterable[str]) -> None:
        if self.enforce_scopes and not token.has_any_scope(_graph_scope(n) for n in names):
            raise GraphError(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")

    def _resolve_mailbox(self, token: AccessToken, user: str | None) -> str:
        if user is None:
            if token.account is None:
                raise GraphError(
                    400, "BadRequest", "/me request is only valid with delegated authentication flow."
                )
            self._remember(token.account)
            return token.account
        wanted = unquote(user)
        with self._state:
            known = self._known_ids.get(wanted.lower())
        account = known or (wanted if _EMAIL.match(wanted) else None)
        if token.account is not None:
            if account is None or account.lower() != token.account.lower():
                raise GraphError(
                    403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
                )
            return token.account
        if account is None or (self.mailboxes is not None and account.lower() not in self.mailboxes):
            raise GraphError(404, "ErrorInvalidUser", f"The requested user '{wanted}' is invalid.")
        self._remember(account)
        return account

    def _remember(self, account: str) -> None:
        with self._state:
            self._known_ids[user_id(account)] = account

    # --- users -------------------------------------------------------------------------------------

    def _profile(self, request: Request, token: AccessToken, account: str, _: dict[str, Any]) -> Reply:
        self._require(token, USER_SCOPES)
        local = account.split("@", 1)[0]
        return Reply.json(
            200,
            {
                "@odata.context": f"{self.base_url}/$metadata#users/$entity",
                "id": user_id(account),
                "displayName": local.replace(".", " ").title(),
                "mail": account,
                "userPrincipalName": account,
            },
        )

    # --- sending -----------------------------------------------------------------------------------

    def _send_mail(self, request: Request, token: AccessToken, account: str, _: dict[str, Any]) -> Reply:
        self._require(token, SEND_SCOPES)
        raw = self._mime_body(request)
        self._deliver(raw, account, via="graph.sendMail")
        return Reply(202)

    def _create_draft(
        self, request: Request, token: AccessToken, account: str, args: dict[str, Any]
    ) -> Reply:
        self._require(token, READWRITE_SCOPES)
        folder = (args.get("folder") or "drafts").lower()
        if folder != "drafts":
            raise GraphError(
                400, "ErrorInvalidRequest", "This local Graph keeps drafts in the Drafts folder only."
            )
        raw = self._mime_body(request)
        draft = Draft(id=_item_id(), account=account, raw=raw)
        with self._state:
            self.drafts[draft.id] = draft
        return Reply.json(201, self._resource(draft.id, draft.message, is_draft=True, attachments=0))

    def _send_draft(self, request: Request, token: AccessToken, account: str, args: dict[str, Any]) -> Reply:
        self._require(token, SEND_SCOPES)
        draft = self._draft(account, args["id"])
        raw = draft.final_mime()
        if len(raw) > self.max_message_bytes:
            raise GraphError(
                400, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size."
            )
        self._deliver(raw, account, via="graph.draft")
        with self._state:
            self.drafts.pop(draft.id, None)
            for key in [k for k, s in self._sessions.items() if s.draft_id == draft.id]:
                del self._sessions[key]
        return Reply(202)

    def _deliver(self, raw: bytes, account: str, *, via: str) -> None:
        message = parse(raw)
        recipients = header_recipients(message)
        if not recipients:
            raise GraphError(
                400,
                "ErrorInvalidRecipients",
                "At least one recipient isn't valid: the message has no recipients.",
            )
        senders = sender_addresses(message)
        for address in senders:
            if not may_send_as(address, account, self.aliases):
                raise GraphError(
                    403,
                    "ErrorSendAsDenied",
                    "The user account which was used to submit this request does not have the right to send "
                    "mail on behalf of the specified sending account., Cannot submit message.",
                )
        if not senders:
            # Exchange sends a message without From from the mailbox itself.
            raw = f"From: {account}\r\n".encode() + raw
            message = parse(raw)
        self.mailbox.deliver(
            DeliveredMessage(
                id=_item_id(), raw=raw, message=message, account=account, via=via, recipients=recipients
            )
        )

    def _mime_body(self, request: Request) -> bytes:
        if request.content_type != "text/plain":
            raise GraphError(
                400,
                "ErrorInvalidRequest",
                "This local Graph takes the MIME form only: Content-Type text/plain with the base64 "
                "MIME message.",
            )
        try:
            compact = "".join(request.body.decode("ascii").split())
            raw = base64.b64decode(compact, validate=True)
        except (UnicodeDecodeError, binascii.Error) as error:
            raise GraphError(
                400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
            ) from error
        if not raw.strip():
            raise GraphError(400, "ErrorMimeContentInvalid", "The MIME content is empty.")
        return raw

    # --- drafts and attachments --------------------------------------------------------------------

    def _draft(self, account: str, draft_id: str) -> Draft:
        with self._state:
            draft = self.drafts.get(draft_id)
        if draft is None or draft.account.lower() != account.lower():
            raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        return draft

    def _get_message(self, request: Request, token: AccessToken, account: str, args: dict[str, Any]) -> Reply:
        self._require(token, READ_SCOPES)
        with self._state:
            draft = self.drafts.get(args["id"])
        if draft is not None and draft.account.lower() == account.lower():
            return Reply.json(
                200,
                self._resource(draft.id, draft.message, is_draft=True, attachments=len(draft.attachments)),
            )
        for sent in self.sent_items:
            if sent.id == args["id"] and sent.account.lower() == account.lower():
                return Reply.json(200, self._resource(sent.id, sent.message, is_draft=False, attachments=0))
        raise GraphError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    def _delete_message(
        self, request: Request, token: AccessToken, account: str, args: dict[str, Any]
    ) -> Reply:
        self._require(token, READWRITE_SCOPES)
        draft = self._draft(account, args["id"])
        with self._state:
            self.drafts.pop(draft.id, None)
        return Reply(204)

    def _list_folder(self, request: Request, token: AccessToken, account: str, args: dict[str, Any]) -> Reply:
        self._require(token, READ_SCOPES)
        folder = args["folder"].lower()
        if folder == "sentitems":
            items = [
                self._resource(m.id, m.message, is_draft=False, attachments=0)
                for m in self.sent_items
                if m.account.lower() == account.lower()
            ]
        elif folder == "drafts":
            with self._state:
                drafts = [d for d in self.drafts.values() if d.account.lower() == account.lower()]
            items = [
                self._resource(d.id, d.message, is_draft=True, attachments=len(d.attachments)) for d in drafts
            ]
        else:
            raise GraphError(
                404, "ErrorItemNotFound", "The specified folder could not be found in the store."
            )
        return Reply.json(200, {"@odata.context": f"{self.base_url}/$metadata#messages", "value": items})

    def _add_attachment(
        self, request: Request, token: AccessToken, account: str, args: dict[str, Any]
    ) -> Reply:
        self._require(token, READWRITE_SCOPES)
        draft = self._draft(account, args["id"])
        body = self._json_body(request)
        if body.get("@odata.type") != "#microsoft.graph.fileAttachment":
            raise GraphError(
                400, "ErrorInvalidRequest", "Only #microsoft.graph.fileAttachment is modelled here."
            )
        try:
            data = base64.b64decode(str(body.get("contentBytes", "")), validate=True)
        except binascii.Error as error:
            raise GraphError(400, "ErrorInvalidRequest", "contentBytes is not valid base64.") from error
        item = _Attachment(
            id=_item_id(),
            name=str(body.get("name") or "attachment"),
            content_type=str(body.get("contentType") or "application/octet-stream"),
            data=data,
            is_inline=bool(body.get("isInline")),
            content_id=body.get("contentId"),
        )
        with self._state:
            draft.attachments.append(item)
        return Reply.json(
            201,
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "id": item.id,
                "name": item.name,
                "contentType": item.content_type,
                "size": len(item.data),
                "isInline": item.is_inline,
            },
        )

    def _create_upload_session(
        self, request: Request, token: AccessToken, account: str, args: dict[str, Any]
    ) -> Reply:
        self._require(token, READWRITE_SCOPES)
        draft = self._draft(account, args["id"])
        body = self._json_body(request)
        item = next((v for k, v in body.items() if k.lower() == "attachmentitem"), None)
        if not isinstance(item, dict):
            raise GraphError(
                400, "ErrorInvalidParameter", "The request must contain the parameter 'AttachmentItem'."
            )
        if str(item.get("attachmentType", "file")).lower() != "file":
            raise GraphError(400, "ErrorInvalidParameter", "Only attachmentType 'file' is modelled here.")
        size = item.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0 or not item.get("name"):
            raise GraphError(400, "ErrorInvalidParameter", "AttachmentItem needs a name and a positive size.")
        if size < self.upload_session_min_bytes:
            raise GraphError(
                400,
                "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                "Attachment size must be greater than the minimum size.",
            )
        if size > self.max_attachment_bytes:
            raise GraphError(
                400, "ErrorAttachmentSizeExceeded", "The attachment exceeds the maximum supported size."
            )
        session = _UploadSession(
            id=_item_id(),
            draft_id=draft.id,
            authtoken=secrets.token_urlsafe(32),
            item=_Attachment(
                id=_item_id(),
                name=str(item["name"]),
                content_type=str(item.get("contentType") or "application/octet-stream"),
                data=b"",
                is_inline=bool(item.get("isInline")),
                content_id=item.get("contentId"),
            ),
            size=size,
            expires_at=datetime.now(UTC) + timedelta(minutes=15),
        )
        with self._state:
            self._sessions[session.id] = session
        upload_url = (
            f"{self.url}/upload/Users('{user_id(account)}')/Messages('{draft.id}')"
            f"/AttachmentSessions('{session.id}')?authtoken={session.authtoken}"
        )
        return Reply.json(
            201,
            {
                "@odata.context": f"{self.base_url}/$metadata#microsoft.graph.uploadSession",
                "uploadUrl": upload_url,
                "expirationDateTime": _stamp(session.expires_at),
                "nextExpectedRanges": ["0-"],
            },
        )

    def _upload(self, request: Request, user: str, session_id: str) -> Reply:
        with self._state:
            session = self._sessions.get(session_id)
        if session is None:
            raise GraphError(404, "ErrorItemNotFound", "The upload session was not found.")
        if not secrets.compare_digest(request.arg("authtoken") or "", session.authtoken):
            raise GraphError(401, "InvalidAuthenticationToken", "The upload URL's token is not valid.")
        if request.method == "DELETE":
            with self._state:
                self._sessions.pop(session_id, None)
            return Reply(204)
        if request.method != "PUT":
            raise GraphError(405, "Request_BadRequest", "An upload URL takes PUT or DELETE.")
        found = _CONTENT_RANGE.match(request.header("Content-Range").strip())
        if not found:
            raise GraphError(
                400, "ErrorInvalidParameter", "Content-Range must be 'bytes {start}-{end}/{total}'."
            )
        start, end, total = int(found["start"]), int(found["end"]), int(found["total"])
        if total != session.size:
            raise GraphError(400, "ErrorInvalidParameter", f"The total size must be {session.size}.")
        if start != len(session.received) or end < start or end >= session.size:
            raise GraphError(416, "InvalidRange", f"The next expected byte is {len(session.received)}.")
        if end - start + 1 != len(request.body):
            raise GraphError(
                400, "ErrorInvalidParameter", "The body length does not match the Content-Range."
            )
        with self._state:
            session.received.extend(request.body)
            done = len(session.received) == session.size
            if done:
                self._sessions.pop(session_id, None)
                draft = self.drafts.get(session.draft_id)
                if draft is not None:
                    session.item.data = bytes(session.received)
                    draft.attachments.append(session.item)
        if not done:
            return Reply.json(
                200,
                {
                    "expirationDateTime": _stamp(session.expires_at),
                    "nextExpectedRanges": [str(len(session.received))],
                },
            )
        location = f"{self.base_url}/Users('{user}')/Messages('{session.draft_id}')"
        return Reply(201, b"", [("Location", f"{location}/Attachments('{session.item.id}')")])

    # --- helpers -----------------------------------------------------------------------------------

    def _json_body(self, request: Request) -> dict[str, Any]:
        if request.content_type != "application/json":
            raise GraphError(400, "ErrorInvalidRequest", "Content-Type must be application/json.")
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError) as error:
            raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from error
        if not isinstance(body, dict):
            raise GraphError(400, "BadRequest", "The JSON payload must be an object.")
        return body

    def _resource(
        self, item_id: str, message: EmailMessage, *, is_draft: bool, attachments: int
    ) -> dict[str, Any]:
        def people(name: str) -> list[dict[str, Any]]:
            values = [str(v) for v in message.get_all(name, [])]
            return [{"emailAddress": {"name": n or a, "address": a}} for n, a in getaddresses(values) if a]

        senders = people("From")
        return {
            "id": item_id,
            "subject": str(message.get("Subject", "")),
            "isDraft": is_draft,
            "hasAttachments": attachments > 0 or (message.is_multipart() and any(message.iter_attachments())),
            "internetMessageId": str(message.get("Message-ID", "")),
            "from": senders[0] if senders else None,
            "toRecipients": people("To"),
            "ccRecipients": people("Cc"),
            "bccRecipients": people("Bcc"),
        }

    def _error_reply(self, request: Request, error: GraphError) -> Reply:
        request_id = str(uuid.uuid4())
        client_request_id = request.header("client-request-id") or str(uuid.uuid4())
        body = {
            "error": {
                "code": error.code,
                "message": error.message,
                "innerError": {
                    "date": _stamp(datetime.now(UTC)),
                    "request-id": request_id,
                    "client-request-id": client_request_id,
                },
            }
        }
        headers = [("request-id", request_id), ("client-request-id", client_request_id), *error.headers]
        if error.status == 401:
            headers.append(("WWW-Authenticate", 'Bearer realm="", error="invalid_token"'))
        return Reply(
            error.status, json.dumps(body).encode(), [("Content-Type", "application/json"), *headers]
        )


def _item_id() -> str:
    return "AAMkAD" + secrets.token_urlsafe(33)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
