"""One OpenAPI document for every API function, and a Swagger UI page to read and try it."""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Mapping
from html import escape
from pathlib import Path
from types import ModuleType

from aws_lambda_powertools.event_handler import openapi as powertools_openapi
from aws_lambda_powertools.event_handler.openapi import OpenAPIMerge
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer, Server

from local.http_server import Page

TITLE = "Company mail API (local)"
DESCRIPTION = (
    "Email settings, test-send and sending for small-business software.\n\n"
    "Deployed, every request carries the Cognito ID token as a Bearer token. On the local stack the "
    "same claims come from the headers `X-Tenant-Id`, `X-User-Id`, `X-User-Email` and `X-User-Groups` "
    "(comma separated; an empty value means no groups), defaulting to tenant `demo`, user `admin`, "
    "`admin@demo.test`, groups `admin`."
)
# Powertools ships the Swagger UI bundle for its own enable_swagger(); serving it keeps /docs offline.
_ASSETS = Path(powertools_openapi.__file__).parent / "swagger_ui"
CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"


def openapi_document(modules: Mapping[str, ModuleType], server_url: str, version: str) -> str:
    merge = OpenAPIMerge(
        title=TITLE,
        version=version,
        description=DESCRIPTION,
        servers=[Server(url=server_url, description="local stack (python -m local.run)")],
        security_schemes={
            "cognito": HTTPBearer(
                bearerFormat="JWT", description="Cognito ID token (deployed API); ignored locally"
            )
        },
        security=[{"cognito": []}],
        on_conflict="error",
    )
    for logical, module in modules.items():
        try:
            merge.add_schema(module.app.get_openapi_schema(title=TITLE, version=version))
        except Exception:  # noqa: BLE001 - one function's broken schema must not hide the others'
            print(f"OpenAPI: the schema of {logical} could not be generated:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
    return merge.get_openapi_json_schema()


def docs_pages(openapi_json: str) -> dict[str, Page]:
    """/openapi.json, /docs and, when Powertools' copy is installed, the Swagger UI assets."""
    pages = {"/openapi.json": Page("application/json", openapi_json.encode())}
    js, css = _ASSETS / "swagger-ui-bundle.min.js", _ASSETS / "swagger-ui.min.css"
    if js.is_file() and css.is_file():
        pages["/docs/swagger-ui-bundle.min.js"] = Page("text/javascript; charset=utf-8", js.read_bytes())
        pages["/docs/swagger-ui.min.css"] = Page("text/css; charset=utf-8", css.read_bytes())
        js_url, css_url = "/docs/swagger-ui-bundle.min.js", "/docs/swagger-ui.min.css"
    else:
        js_url, css_url = f"{CDN}/swagger-ui-bundle.js", f"{CDN}/swagger-ui.css"
    pages["/docs"] = Page("text/html; charset=utf-8", docs_html(js_url, css_url).encode())
    return pages


def docs_html(js_url: str, css_url: str) -> str:
    options = json.dumps({"url": "/openapi.json", "dom_id": "#swagger-ui", "deepLinking": True})
    raw = '<a href="/openapi.json">/openapi.json</a>'
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>{escape(TITLE)}</title>
  <link rel="stylesheet" href="{escape(css_url)}">
</head>
<body>
  <noscript>Swagger UI needs JavaScript. The raw OpenAPI document is at {raw}.</noscript>
  <div id="swagger-ui"><p>Loading Swagger UI&hellip; If it does not appear, the raw OpenAPI document
  is at {raw}.</p></div>
  <script src="{escape(js_url)}"></script>
  <script>window.ui = SwaggerUIBundle({options});</script>
</body>
</html>
"""
