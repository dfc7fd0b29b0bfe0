"""The template's functions as Lambda runs them, and a client that calls their routes as API Gateway.

Routes are matched by the local stack's own matcher (local.http_server.match_route), so a test and
`make run` send a request to the same function with the same path parameters.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from types import ModuleType
from typing import Any

from local.events import ADMIN, FakeContext, HttpRequest, Identity, http_event
from local.http_server import match_route
from local.template import Template

PROBLEM_JSON = "application/problem+json"

_loaded: dict[str, ModuleType] = {}


def load_function(template: Template, logical_id: str) -> ModuleType:
    """Import a function's handler module from its CodeUri under a name of its own, once per run."""
    if logical_id not in _loaded:
        path, _ = template.handler_path(logical_id)
        spec = importlib.util.spec_from_file_location(f"fn_{logical_id}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        _loaded[logical_id] = module
    return _loaded[logical_id]


def cold_start(template: Template) -> None:
    """Every function a fresh container: no cached settings, password or client from before."""
    for logical in template.functions():
        load_function(template, logical).services.cache_clear()


class Api:
    """Calls the template's routes as API Gateway would: finds the function, builds a v2 event."""

    def __init__(self, template: Template) -> None:
        self.template = template
        self.routes = template.routes()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        identity: Identity | None = ADMIN,
        raw_body: str | bytes | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, body parsed when JSON, headers in lower case). `headers` are added to (or replace)
        the sample event's, which sends Content-Type: application/json."""
        match = match_route(self.routes, method, path)
        if match.route is None:
            raise AssertionError(f"template.yaml has no route for {method} {path}")
        module = load_function(self.template, match.route.function)
        request = HttpRequest(
            method=method,
            path=path,
            route=match.route.path,
            path_parameters=match.path_parameters,
            query=query or {},
            headers=headers or {},
            body=raw_body if raw_body is not None else (None if body is None else json.dumps(body)),
        )
        response = module.lambda_handler(http_event(request, identity), FakeContext())
        text = response.get("body") or ""
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        parsed = json.loads(text) if text and "json" in headers.get("content-type", "") else text
        return response["statusCode"], parsed, headers
