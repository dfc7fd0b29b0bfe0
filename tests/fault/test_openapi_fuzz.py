"""Schemathesis against the OpenAPI document the local stack serves, over real HTTP.

The stack (local.run.start_stack: moto, a STARTTLS SMTP server, the API) runs in this process on
free ports with temporary folders. Every operation of template.yaml is fuzzed, with schema-valid
(positive) and schema-violating (negative) requests, as three callers: the default admin, a caller
whose token has no tenant (an empty X-Tenant-Id header), and a signed-in non-admin.

Checks enabled on every response (schemathesis' own, passed explicitly to call_and_validate):
  not_a_server_error            no 5xx, ever (API.md: no request gets a 500; 503 is an outage only)
  status_code_conformance       the status is one the operation documents
  content_type_conformance      the Content-Type is one documented for that status
  response_headers_conformance  documented response headers are present and valid
  response_schema_conformance   the body validates against the documented schema
  negative_data_rejection       a schema-violating request is refused with a 4xx
Not enabled:
  positive_data_acceptance      schema-valid data is legitimately refused here (404 unknown work
                                order, 409 no settings, 422 cross-field rules such as a username
                                without a password): the schema cannot express those.
  stateful phases, ignored_auth, use_after_free and the other whole-run checks: the pytest
                                integration below runs one operation at a time.
Generation: `with-security-parameters = false`, because the local stack takes identity from the
X-* headers and ignores the Bearer token the document declares (deployed, API Gateway's JWT
authorizer answers a missing token before any Lambda runs).

Hypothesis drives generation with derandomize=True and no example database: the same requests in
the same order on every run. The operations are listed from template.yaml at collection time, so
no server starts unless these tests run.

Explicit examples (EDGE_EXAMPLES) go first into the admin's positive run of their operation: work
orders in year 1 and 9999, reminder runs on days whose appointments would leave the calendar. Bodies
no generator writes, because they are not JSON an encoder produces or not sent as JSON (100,000
levels of nesting, a 5,000-digit number, text/plain), are sent raw (RAW_BODIES) and their answers
run through the same checks.

Loopback only: a request whose body names an SMTP host that would pass validation is sent with
host 127.0.0.1 and the local SMTP port instead, so no test send ever leaves this machine (a
provider preset would otherwise resolve to smtp.gmail.com and the like).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from local.seed import demo_settings
from local.stack import LocalStack
from local.template import Template
from mailer.settings.models import valid_host
from tests.support.stack import running_stack

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
ROUTES = [f"{route.method} {route.path}" for route in Template().routes()]
# Operations without parameters or a body: nothing to send that violates the schema, so they are
# fuzzed with valid requests only (the first test checks the document agrees).
NO_INPUT = {
    "GET /providers",
    "GET /merge-fields",
    "GET /automations",
    "GET /document-templates",
    "GET /invoice-reminders",
    "GET /statements/schedule",
    "GET /suppressions",
    "GET /document-automations",
}
# Operations whose every input is valid: the open pixel takes any name (it answers the same GIF).
ANY_INPUT = {"GET /t/{name}"}
CASES = [
    (route, mode)
    for route in ROUTES
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE or route not in NO_INPUT | ANY_INPUT
]
IDENTITIES = {
    "admin": {},  # the local server's defaults: tenant demo, user admin, groups admin
    "no-tenant": {"X-Tenant-Id": ""},  # claims without custom:tenant_id
    "non-admin": {"X-User-Id": "tech-1", "X-User-Email": "tech@demo.test", "X-User-Groups": ""},
}
EXAMPLES = {"admin": 25, "no-tenant": 8, "non-admin": 8}  # per operation and generation mode
SMTP_BODIES = ("/settings/{profile}", "/settings/test")
PROBLEM_JSON = "application/problem+json"
EXTREME_TIMES = ("0001-01-01T00:00:00+14:00", "9999-12-31T23:00:00-12:00")
EDGE_WORK_ORDER = {
    "number": "WO-EDGE",
    "customer": {"name": "Dana", "email": "dana@customer.example", "contact_method": "email"},
}
# Case arguments given to schemathesis as explicit examples, in the admin's positive run.
EDGE_EXAMPLES: dict[str, list[dict[str, Any]]] = {
    "PUT /work-orders/{work_order_id}": [
        {
            "path_parameters": {"work_order_id": "WO-EDGE"},
            "body": EDGE_WORK_ORDER | {"scheduled_start": when, **end},
        }
        for when in EXTREME_TIMES
        for end in ({}, {"scheduled_end": when})
    ],
    "POST /automations/{automation_type}/preview": [
        {"path_parameters": {"automation_type": kind}, "body": {"work_order_id": "WO-EDGE"}}
        for kind in ("reminder", "confirmation", "thank_you")
    ],
    "POST /automations/reminder/run": [
        {"body": {"date": day}} for day in ("9999-12-31", "9999-12-02", "0001-01-01", "2101-01-01")
    ],
}
DEPTH = 100_000
DEEP_ARRAY = "[" * DEPTH + "]" * DEPTH
DEEP_OBJECT = '{"a":' * DEPTH + "null" + "}" * DEPTH
LONG_NUMBER = '{"number": ' + "9" * 5000 + "}"
# (body as sent, its Content-Type, the status expected), sent to every operation that takes a body.
RAW_BODIES = {
    "nested 100,000 deep (array)": (DEEP_ARRAY, "application/json", 422),
    "nested 100,000 deep (object)": (DEEP_OBJECT, "application/json", 422),
    "nested 100,000 deep (in a field)": ('{"to": ' + DEEP_ARRAY + "}", "application/json", 422),
    "a 5,000-digit number": (LONG_NUMBER, "application/json", 422),
    "a 5,000-digit fraction": ('{"port": 1' + "0" * 5000 + ".5}", "application/json", 422),
    "JSON as text/plain (fetch's default)": ("{}", "text/plain;charset=UTF-8", 415),
    "JSON as text/plain, nested 100,000 deep": (DEEP_OBJECT, "text/plain", 415),
}


@pytest.fixture(autouse=True)
def _isolated_aws() -> None:
    """Replaces the suite-wide fixture that removes AWS_ENDPOINT_URL: the stack points boto3 at its
    own moto server for this process, and puts the old environment back when it stops."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("fuzzed-stack")) as stack:
        yield stack


@pytest.fixture(scope="module")
def served(stack: LocalStack) -> Any:
    config = schemathesis.Config.from_dict({"generation": {"with-security-parameters": False}})
    return schemathesis.openapi.from_url(f"{stack.api_url}/openapi.json", config=config)


def loopback_only(case: Any, stack: LocalStack) -> None:
    if case.operation.path not in SMTP_BODIES or not isinstance(case.body, dict):
        return
    host = case.body.get("host")
    try:
        routable = host is None or bool(valid_host(host))
    except (TypeError, ValueError):
        routable = False  # refused by validation: leave it for the negative checks
    if routable:
        case.body["host"] = "127.0.0.1"
        port = case.body.get("port")
        if port is None or (isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535):
            case.body["port"] = stack.smtp_port


def test_the_document_describes_every_route_of_the_template(served: Any) -> None:
    operations = {
        f"{method.upper()} {path}": definition
        for path, methods in served.raw_schema["paths"].items()
        for method, definition in methods.items()
    }
    assert set(operations) == set(ROUTES)
    without_input = {r for r, d in operations.items() if not d.get("parameters") and not d.get("requestBody")}
    assert without_input == NO_INPUT


@pytest.mark.parametrize(("route", "mode"), CASES, ids=[f"{route} {mode.value}" for route, mode in CASES])
@pytest.mark.parametrize("who", list(IDENTITIES))
def test_fuzzed_requests_get_documented_answers_and_never_a_5xx(
    served: Any, stack: LocalStack, who: str, route: str, mode: GenerationMode
) -> None:
    method, path = route.split(" ", 1)
    operation = served[path][method]

    @settings(
        max_examples=EXAMPLES[who],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def fuzz(case: Any) -> None:
        loopback_only(case, stack)
        case.call_and_validate(headers=IDENTITIES[who], checks=CHECKS, timeout=30)

    if who == "admin" and mode is GenerationMode.POSITIVE:
        for edge in EDGE_EXAMPLES.get(route, []):
            fuzz = example(case=operation.Case(**edge))(fuzz)
    fuzz()


def test_every_edge_example_names_a_route_of_the_template() -> None:
    assert set(EDGE_EXAMPLES) <= set(ROUTES)


# --- bodies no generator writes: raw bytes, through the same checks -------------------------------

# The POSTs without a request body: a resend, a work order's reminder and a customer's statement sent now.
NO_BODY = {
    "POST /emails/{email_id}/resend",
    "POST /work-orders/{work_order_id}/remind",
    "POST /customers/{customer_id}/statement",
}
BODY_ROUTES = [r for r in ROUTES if r.split(" ", 1)[0] in ("POST", "PUT") and r not in NO_BODY]


def concrete(template_path: str) -> str:
    """The template path with a value for each parameter that passes its pattern."""
    values = {"{profile}": "company", "{provider}": "microsoft", "{automation_type}": "reminder"}
    values |= {"{document_type}": "invoice", "{work_order_id}": "WO-EDGE"}
    values |= {"{event}": "shipment.shipped"}
    values |= {"{email}": "dana@customer.example"}
    return "/".join(values.get(part, part) for part in template_path.split("/"))


def raw_validated(served: Any, stack: LocalStack, route: str, data: str, content_type: str) -> Any:
    """Send `data` as it is, then run the checks of the fuzzed requests on the answer."""
    method, template_path = route.split(" ", 1)
    path = concrete(template_path)
    response = requests.request(
        method,
        f"{stack.api_url}{path}",
        data=data.encode(),
        headers={"Content-Type": content_type},
        timeout=30,
    )
    case = served[template_path][method].Case(path_parameters=_parameters(template_path, path) or None)
    case.validate_response(response, checks=CHECKS)
    return response


def test_every_route_with_a_body_is_sent_the_raw_bodies(served: Any) -> None:
    with_body = {
        f"{method.upper()} {path}"
        for path, methods in served.raw_schema["paths"].items()
        for method, definition in methods.items()
        if definition.get("requestBody")
    }
    assert with_body == set(BODY_ROUTES)


@pytest.mark.parametrize("shape", list(RAW_BODIES))
@pytest.mark.parametrize("route", BODY_ROUTES)
def test_raw_bodies_get_a_documented_4xx_naming_the_body(
    served: Any, stack: LocalStack, route: str, shape: str
) -> None:
    data, content_type, status = RAW_BODIES[shape]

    response = raw_validated(served, stack, route, data, content_type)

    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == PROBLEM_JSON
    assert [e["field"] for e in response.json()["errors"]] == ["body"]


def test_dates_at_the_calendar_edges_get_documented_answers(served: Any, stack: LocalStack) -> None:
    reminder = {"active": True, "days_before": 30, "subject": "Reminder", "body_html": "<p>See you</p>"}
    assert validated(served, "PUT", "/automations/reminder", body=reminder).status_code == 200
    for when in EXTREME_TIMES:
        refused = validated(
            served, "PUT", "/work-orders/WO-EDGE", body=EDGE_WORK_ORDER | {"scheduled_start": when}
        )
        assert refused.status_code == 422, refused.text
        assert [e["field"] for e in refused.json()["errors"]] == ["scheduled_start"]
    for day in ("9999-12-31", "9999-12-02", "0001-01-01"):
        run = validated(served, "POST", "/automations/reminder/run", body={"date": day})
        assert run.status_code == 422, run.text
        assert [e["field"] for e in run.json()["errors"]] == ["date"]

    last = EDGE_WORK_ORDER | {"scheduled_start": "2100-12-31T23:59:59-12:00"}
    assert validated(served, "PUT", "/work-orders/WO-EDGE", body=last).status_code == 200
    for kind in ("reminder", "confirmation", "thank_you"):
        preview = validated(served, "POST", f"/automations/{kind}/preview", body={"work_order_id": "WO-EDGE"})
        assert preview.status_code == 200, preview.text
    run = validated(served, "POST", "/automations/reminder/run", body={"date": "2100-12-31"})
    assert run.status_code == 200, run.text


# --- hand-written requests that random data rarely reaches: sends, 201, 204, the sent log ----------


def validated(served: Any, method: str, path: str, **request: Any) -> Any:
    """Send one request built by hand and run the same checks on its response."""
    template_path = next(
        r.split(" ", 1)[1]
        for r in ROUTES
        if r.split(" ", 1)[0] == method and _matches(r.split(" ", 1)[1], path)
    )
    parameters = _parameters(template_path, path)
    case = served[template_path][method].Case(path_parameters=parameters or None, **request)
    return case.call_and_validate(checks=CHECKS, timeout=30)


def _matches(template_path: str, path: str) -> bool:
    a, b = template_path.strip("/").split("/"), path.strip("/").split("/")
    return len(a) == len(b) and all(x == y or x.startswith("{") for x, y in zip(a, b, strict=True))


def _parameters(template_path: str, path: str) -> dict[str, str]:
    pairs = zip(template_path.strip("/").split("/"), path.strip("/").split("/"), strict=True)
    return {x.strip("{}"): y for x, y in pairs if x.startswith("{")}


def test_a_working_day_over_http_conforms_to_the_document(served: Any, stack: LocalStack) -> None:
    company = demo_settings(stack.config)
    mine = company | {"from_name": "Terry Tech", "from_email": "tech@demo.test"}
    mine = {k: v for k, v in mine.items() if k not in ("timezone", "notify_email", "track_opens")}

    assert validated(served, "PUT", "/settings/company", body=company).status_code == 200
    assert validated(served, "PUT", "/settings/me", body=mine).status_code == 200
    tested = validated(served, "POST", "/settings/company/test", body={"to": "you@demo.test"})
    assert tested.status_code == 200 and tested.json()["ok"] is True, tested.text
    unsaved = company | {"password": "wrong", "to": "you@demo.test", "profile": "company"}
    wrong = validated(served, "POST", "/settings/test", body=unsaved)
    assert wrong.status_code == 200 and wrong.json()["category"] == "auth_failed", wrong.text
    upload = validated(
        served,
        "POST",
        "/documents/uploads",
        body={"filename": "INV-1001.pdf", "content_type": "application/pdf", "size": 48213},
    )
    assert upload.status_code == 201
    document = {"type": "invoice", "number": "INV-1001", "customer_name": "Dana", "amount": "120.00"}
    sent = validated(
        served, "POST", "/documents/email", body={"document": document, "to": ["dana@customer.example"]}
    )
    assert sent.status_code == 200 and sent.json()["status"] == "sent", sent.text
    email_id = sent.json()["id"]
    assert validated(served, "GET", f"/emails/{email_id}").status_code == 200
    assert validated(served, "POST", f"/emails/{email_id}/resend").status_code == 200
    listed = validated(
        served, "GET", "/emails", query={"document_type": "invoice", "document_number": "INV-1001"}
    )
    assert listed.status_code == 200 and len(listed.json()["items"]) == 2
    work_order = {
        "number": "WO-1001",
        "scheduled_start": "2026-11-24T09:00:00-06:00",
        "customer": {"name": "Dana", "email": "dana@customer.example", "contact_method": "email"},
    }
    assert validated(served, "PUT", "/work-orders/WO-1001", body=work_order).status_code == 200
    changed = validated(served, "POST", "/work-orders/WO-1001/status", body={"status": "en_route"})
    assert changed.status_code == 200
    assert (
        validated(served, "POST", "/automations/reminder/run", body={"date": "2026-11-23"}).status_code == 200
    )
    assert validated(served, "DELETE", "/settings/me").status_code == 204


def test_what_is_saved_is_what_the_lists_show(stack: LocalStack) -> None:
    """PUT then GET of the collection: a saved automation or document wording must be listed."""
    url = stack.api_url
    automation = {
        "active": True,
        "subject": "Thank you, {{ customer.first_name }}",
        "body_html": "<p>Thanks</p>",
    }
    template = {"subject": "Your estimate {{ document.number }}", "body_html": "<p>Attached.</p>"}
    assert requests.put(f"{url}/automations/thank_you", json=automation, timeout=10).status_code == 200
    assert requests.put(f"{url}/document-templates/estimate", json=template, timeout=10).status_code == 200

    assert requests.get(f"{url}/automations/thank_you", timeout=10).json()["subject"] == automation["subject"]
    listed = {a["type"]: a for a in requests.get(f"{url}/automations", timeout=10).json()}
    assert (listed["thank_you"]["subject"], listed["thank_you"]["active"]) == (automation["subject"], True)
    wordings = {t["type"]: t for t in requests.get(f"{url}/document-templates", timeout=10).json()}
    assert wordings["estimate"]["subject"] == template["subject"]


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c"])
def test_a_unicode_line_separator_in_a_subject_is_422_naming_it_not_500(stack: LocalStack, separator: str):
    """JSON carries any code point; the email package refuses more line breaks than CR and LF."""
    saved = requests.put(f"{stack.api_url}/settings/company", json=demo_settings(stack.config), timeout=10)
    assert saved.status_code == 200, saved.text
    subject = f"Invoice{separator}Bcc: x@evil.example"
    body = {"document": {"type": "invoice", "number": "INV-1002"}, "to": ["dana@customer.example"]}
    body |= {"subject": subject, "sender": "company"}

    response = requests.post(f"{stack.api_url}/documents/email", json=body, timeout=30)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    assert [e["field"] for e in response.json()["errors"]] == ["subject"]


def test_a_body_that_is_not_utf8_is_422_not_500(stack: LocalStack) -> None:
    response = requests.put(
        f"{stack.api_url}/work-orders/WO-1",
        data=b'{"number": "\xff\xfe"}',
        headers={"Content-Type": "application/json"},
        timeout=10,
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM_JSON


if os.environ.get("FUZZ_EXAMPLES"):  # a longer local run: FUZZ_EXAMPLES=200 pytest tests/fault
    EXAMPLES.update(dict.fromkeys(EXAMPLES, int(os.environ["FUZZ_EXAMPLES"])))
