"""The OpenAPI document generates clean clients: short camelCase operation ids, named response schemas."""

from __future__ import annotations

import re

import pytest

from local.template import Template
from tests.support.api import load_function

CAMEL = re.compile(r"^[a-z][a-z0-9]*(?:[A-Z][a-z0-9]*)+$|^[a-z]+$")


def operations(template: Template):
    for logical in sorted({r.function for r in template.routes()}):
        schema = load_function(template, logical).app.get_openapi_schema().model_dump(by_alias=True)
        for path, item in schema["paths"].items():
            for method in ("get", "put", "post", "delete"):
                if item.get(method):
                    yield f"{method.upper()} {path}", item[method]


def success_schema(operation: dict) -> tuple[str, dict | None]:
    status = min((s for s in operation["responses"] if str(s)[0] in "23"), key=str)
    content = operation["responses"][status].get("content") or {}
    media = content.get("application/json")
    return str(status), (media or {}).get("schema")  # keys are ints or strings, as Powertools has them


def test_every_operation_has_a_short_explicit_camel_case_id(template, function_env):
    ids = {name: op["operationId"] for name, op in operations(template)}

    assert ids, "no operations found"
    bad = {name: op_id for name, op_id in ids.items() if not CAMEL.match(op_id) or len(op_id) > 32}
    assert bad == {}
    assert len(set(ids.values())) == len(ids), "operation ids must be unique"


@pytest.mark.parametrize("name", ["GET /providers", "GET /merge-fields"])
def test_lists_answer_named_item_schemas(template, function_env, name):
    _, schema = success_schema(dict(operations(template))[name])

    assert schema is not None and schema["type"] == "array" and "$ref" in schema["items"]


def test_every_success_response_is_a_named_schema(template, function_env):
    unnamed = {}
    for name, operation in operations(template):
        status, schema = success_schema(operation)
        if status == "204" or "302" in map(str, operation["responses"]):
            continue  # no body; the OAuth callback answers the browser with a redirect or a page
        answers = {str(code): answer for code, answer in operation["responses"].items()}
        if "image/gif" in (answers[str(status)].get("content") or {}):
            continue  # the open pixel answers an image
        target = (schema or {}).get("items", schema) if (schema or {}).get("type") == "array" else schema
        if not target or "$ref" not in target:
            unnamed[name] = schema
    assert unnamed == {}
