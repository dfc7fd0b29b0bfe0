"""The HTTP API on loopback: template routes to the real handlers with API Gateway HTTP API v2 events."""

from __future__ import annotations

import base64
import json
import re
import sys
import threading
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.api_pool import HandlerRaised, InvocationFailed, PoolUnavailable, WorkerExited
from local.events import ADMIN, HttpRequest, Identity, http_event
from local.handlers import FunctionImportError, Functions
from local.template import Route, Template

PROBLEM_JSON = "application/problem+json"
MAX_BODY_BYTES = 10 * 1024 * 1024  # the HTTP API payload limit
IDENTITY_HEADERS = ("x-tenant-id", "x-user-id", "x-user-email", "x-user-groups")
CRASHED = "The handler raised; the traceback is on the server's stderr."
# How an invocation that brought no answer back is told, most specific first (status, title).
INVOCATION_FAILURES: tuple[tuple[type[InvocationFailed], int, str], ...] = (
    (HandlerRaised, 500, "Internal error"),
    (WorkerExited, 500, "Function exited"),
    (PoolUnavailable, 503, "Service unavailable"),
    (InvocationFailed, 500, "Invocation failed"),
)


@dataclass(frozen=True)
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


@dataclass(frozen=True)
class RouteMatch:
    route: Route | None
    path_parameters: dict[str, str] = field(default_factory=dict)
    allowed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cors:
    allow_methods: tuple[str, ...]
    allow_headers: tuple[str, ...]
    max_age: int

    @classmethod
    def from_template(cls, template: Template) -> Cors:
        """The HttpApi's CorsConfiguration, any origin, plus the local identity headers."""
        config: dict[str, Any] = {}
        for spec in template.of_type("AWS::Serverless::HttpApi").values():
            config = spec["Properties"].get("CorsConfiguration") or config
        methods = tuple(config.get("AllowMethods") or ("GET", "PUT", "POST", "DELETE", "OPTIONS"))
        headers = tuple(dict.fromkeys([*(config.get("AllowHeaders") or ()), *IDENTITY_HEADERS]))
        return cls(methods, headers, int(config.get("MaxAge") or 600))

    def headers(self) -> list[tuple[str, str]]:
        return [
            ("Access-Control-Allow-Origin", "*"),
            ("Access-Control-Allow-Methods", ", ".join(self.allow_methods)),
            ("Access-Control-Allow-Headers", ", ".join(self.allow_headers)),
            ("Access-Control-Max-Age", str(self.max_age)),
        ]


def problem(status: int, title: str, detail: str) -> Reply:
    body = {
        "type": f"https://errors.company-mail.dev/{status}",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [],
    }
    return Reply(status, [("Content-Type", PROBLEM_JSON)], json.dumps(body).encode())


def invocation_problem(exc: InvocationFailed) -> Reply:
    for kind, status, title in INVOCATION_FAILURES:
        if isinstance(exc, kind):
            return problem(status, title, CRASHED if kind is HandlerRaised else f"{exc}.")
    raise AssertionError(exc)  # InvocationFailed is the last row


def match_route(routes: list[Route], method: str, path: str) -> RouteMatch:
    """The most specific path wins, as in API Gateway: static segments before {variables}."""
    candidates = [(route, m) for route in routes if (m := route.pattern.match(path))]
    candidates.sort(key=lambda pair: pair[0].path.count("{"))
    for route, m in candidates:
        if route.method in (method, "ANY"):
            return RouteMatch(route, {k: unquote(v) for k, v in m.groupdict().items()})
    return RouteMatch(None, allowed=tuple(sorted({route.method for route, _ in candidates})))


def identity_from_headers(headers: dict[str, str]) -> Identity:
    """Absent header: the default admin's value; present but empty: no value (no groups, no tenant)."""

    def pick(name: str, default: str | None) -> str | None:
        value = headers.get(name)
        return default if value is None else (value.strip() or None)

    raw_groups = headers.get("x-user-groups")
    groups = (
        ADMIN.groups if raw_groups is None else tuple(g.strip() for g in raw_groups.split(",") if g.strip())
    )
    return Identity(
        tenant_id=pick("x-tenant-id", ADMIN.tenant_id),
        user_id=pick("x-user-id", ADMIN.user_id),
        email=pick("x-user-email", ADMIN.email),
        groups=groups,
        email_verified=(headers.get("x-user-email-verified") or "true").strip().lower() == "true",
    )


def lambda_reply(result: Any) -> Reply:
    """What API Gateway makes of a handler's return value (payload format 2.0)."""
    if not (isinstance(result, dict) and "statusCode" in result):
        return Reply(200, [("Content-Type", "application/json")], json.dumps(result).encode())
    headers = [(k, str(v)) for k, v in (result.get("headers") or {}).items()]
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers += [(key, str(v)) for v in values]
    headers += [("Set-Cookie", str(c)) for c in result.get("cookies") or []]
    body = result.get("body") or ""
    data = base64.b64decode(body) if result.get("isBase64Encoded") else str(body).encode()
    return Reply(int(result["statusCode"]), headers, data)


@dataclass(frozen=True)
class Page:
    content_type: str
    body: bytes


class LocalApiServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], template: Template, functions: Functions) -> None:
        self.template = template
        self.functions = functions
        self.routes = template.routes()
        self.cors = Cors.from_template(template)
        self.pages: dict[str, Page] = {}
        self._thread: threading.Thread | None = None
        super().__init__(address, ApiRequestHandler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="local-api", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        self.server_close()

    def handle_api(self, method: str, target: str, headers: dict[str, str], body: bytes, peer: str) -> Reply:
        split = urlsplit(target)
        page = self.pages.get(split.path)
        if page is not None and method in ("GET", "HEAD"):
            return Reply(200, [("Content-Type", page.content_type)], page.body)
        match = match_route(self.routes, method, split.path)
        if match.route is None:
            if match.allowed:
                reply = problem(
                    405, "Method not allowed", f"{split.path} accepts {', '.join(match.allowed)}."
                )
                return Reply(reply.status, [*reply.headers, ("Allow", ", ".join(match.allowed))], reply.body)
            return problem(404, "Not found", f"No route for {method} {split.path}.")
        event = self._event(method, split.path, split.query, match, headers, body, peer)
        try:
            result = self.functions.invoke(match.route.function, event)
        except FunctionImportError as exc:
            return problem(500, "Function failed to import", str(exc))
        except InvocationFailed as exc:
            return invocation_problem(exc)
        return lambda_reply(result)

    def _event(
        self,
        method: str,
        path: str,
        query: str,
        match: RouteMatch,
        headers: dict[str, str],
        body: bytes,
        peer: str,
    ) -> dict[str, Any]:
        assert match.route is not None
        cookie = headers.pop("cookie", None)
        params: dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            params[key] = f"{params[key]},{value}" if key in params else value
        request = HttpRequest(
            method=method,
            path=path,
            route=match.route.path,
            path_parameters=match.path_parameters,
            query=params,
            headers=headers,
            body=body or None,
        )
        event = http_event(request, identity_from_headers(headers))
        event["headers"] = headers  # only what the client sent, not the sample's
        event["rawQueryString"] = query
        if cookie:
            event["cookies"] = [c.strip() for c in cookie.split(";") if c.strip()]
        http = event["requestContext"]["http"]
        http["sourceIp"] = peer
        http["userAgent"] = headers.get("user-agent", "")
        event["requestContext"]["domainName"] = headers.get("host", "localhost").split(":")[0]
        return event


# Query values never printed in the request log: an OAuth callback carries a code and a state.
_SECRET_QUERY = re.compile(r"(?i)\b(code|state|session_state|token|access_token|refresh_token)=[^&\s\"]+")


class ApiRequestHandler(BaseHTTPRequestHandler):
    server: LocalApiServer
    timeout = 60
    server_version = "company-mail-local"

    def log_message(self, format: str, *args: object) -> None:
        super().log_message(
            format, *(_SECRET_QUERY.sub(r"\1=[hidden]", a) if isinstance(a, str) else a for a in args)
        )

    def _headers(self) -> dict[str, str]:
        joined: dict[str, str] = {}
        for key, value in self.headers.items():
            name = key.lower()
            joined[name] = f"{joined[name]},{value}" if name in joined else value
        return joined

    def _dispatch(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            self._send(problem(400, "Bad request", "Content-Length is not a number of bytes."))
            return
        if length > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(problem(413, "Request too large", f"The body exceeds {MAX_BODY_BYTES} bytes."))
            return
        body = self.rfile.read(length) if length > 0 else b""
        try:
            reply = self.server.handle_api(
                self.command, self.path, self._headers(), body, self.client_address[0]
            )
        except Exception:  # noqa: BLE001 - the safety net that keeps the server up
            traceback.print_exc(file=sys.stderr)
            reply = problem(500, "Internal error", CRASHED)
        self._send(reply)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch

    def do_OPTIONS(self) -> None:
        """API Gateway answers CORS preflight itself, for every path."""
        self._send(Reply(204, []))

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        names = {name.lower() for name, _ in reply.headers}
        for name, value in reply.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        for name, value in self.server.cors.headers():
            if name.lower() not in names:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD" and reply.body:
            self.wfile.write(reply.body)
