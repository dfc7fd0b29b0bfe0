"""API Gateway HTTP API (payload v2) events, built from the sample in events/ that `sam local invoke` uses."""

from __future__ import annotations

import base64
import copy
import json
import time
import uuid
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import urlencode

from local.template import ROOT


@cache
def _base() -> dict[str, Any]:
    return json.loads((ROOT / "events" / "api-base.json").read_text())


@dataclass(frozen=True)
class Identity:
    tenant_id: str | None = "demo"
    user_id: str | None = "admin"
    email: str | None = "admin@demo.test"
    groups: tuple[str, ...] = ("admin",)
    email_verified: bool = True

    def claims(self) -> dict[str, str] | None:
        if self.user_id is None and self.tenant_id is None:
            return None
        claims = {"sub": self.user_id or "", "cognito:groups": "[" + " ".join(self.groups) + "]"}
        if self.email:
            claims["email"] = self.email
            claims["email_verified"] = "true" if self.email_verified else "false"
        if self.tenant_id:
            claims["custom:tenant_id"] = self.tenant_id
        return claims


ADMIN = Identity()
USER = Identity(user_id="user-1", email="tech@demo.test", groups=())


@dataclass
class HttpRequest:
    method: str
    path: str
    route: str  # "/settings/{profile}"
    path_parameters: dict[str, str] = field(default_factory=dict)
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | str | None = None


def http_event(request: HttpRequest, identity: Identity | None = ADMIN) -> dict[str, Any]:
    event = copy.deepcopy(_base())
    route_key = f"{request.method} {request.route}"
    event["routeKey"] = route_key
    event["rawPath"] = request.path
    event["rawQueryString"] = urlencode(request.query)
    if request.query:
        event["queryStringParameters"] = dict(request.query)
    if request.path_parameters:
        event["pathParameters"] = dict(request.path_parameters)
    headers = {k.lower(): v for k, v in request.headers.items()}
    event["headers"] = {**event["headers"], **headers}
    context = event["requestContext"]
    context["routeKey"] = route_key
    context["http"]["method"] = request.method
    context["http"]["path"] = request.path
    context["requestId"] = str(uuid.uuid4())
    context["timeEpoch"] = int(time.time() * 1000)
    claims = identity.claims() if identity else None
    if claims is None:
        context.pop("authorizer", None)
    else:
        context["authorizer"]["jwt"]["claims"] = claims
    body = request.body
    if body is None:
        event.pop("body", None)
    elif isinstance(body, bytes):
        try:
            event["body"] = body.decode("utf-8")
        except UnicodeDecodeError:
            event["body"] = base64.b64encode(body).decode("ascii")
            event["isBase64Encoded"] = True
    else:
        event["body"] = body
    return event


def json_request(method: str, path: str, route: str, body: Any = None, **path_parameters: str) -> HttpRequest:
    return HttpRequest(
        method=method,
        path=path,
        route=route,
        path_parameters=path_parameters,
        body=None if body is None else json.dumps(body),
    )


@dataclass
class FakeContext:
    """The parts of the Lambda context Powertools reads."""

    function_name: str = "local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:local"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str = "us-east-1") -> dict[str, Any]:
    """The event Lambda builds from a ReceiveMessage result for an SQS-triggered function."""
    return {"Records": [sqs_record(m, queue_arn, region) for m in messages]}


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of the event Lambda builds from a ReceiveMessage result."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {k: str(v) for k, v in (message.get("Attributes") or {}).items()},
        "messageAttributes": {
            name: _lambda_attribute(value) for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _lambda_attribute(value: dict[str, Any]) -> dict[str, Any]:
    """SQS's {"StringValue", "DataType"} as Lambda spells it: {"stringValue", "dataType", ...}."""

    def b64(data: bytes | str) -> str:
        return base64.b64encode(data if isinstance(data, bytes) else data.encode()).decode("ascii")

    converted: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues") or []),
        "binaryListValues": [b64(v) for v in value.get("BinaryListValues") or []],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        converted["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        converted["binaryValue"] = b64(value["BinaryValue"])
    return converted
