"""template.yaml and the handlers agree: every API route is served, every served route is deployed."""

from __future__ import annotations

import re

from local.template import Template
from tests.support.api import load_function


def test_every_template_route_has_a_handler_route_and_back(template, function_env):
    deployed = {(r.function, r.method, r.path) for r in template.routes()}

    served = set()
    for logical in {f for f, _, _ in deployed}:
        app = load_function(template, logical).app
        schema = app.get_openapi_schema()
        for path, item in schema.paths.items():
            for method in ("get", "put", "post", "delete", "patch"):
                if getattr(item, method, None) is not None:
                    served.add((logical, method.upper(), re.sub(r"<(\w+)>", r"{\1}", path)))

    assert served == deployed


def test_functions_run_python_313_on_arm64_with_the_mailer_layer():
    body = Template().body["Globals"]["Function"]

    assert body["Runtime"] == "python3.13" and body["Architectures"] == ["arm64"]
    assert body["Layers"] == [{"Ref": "MailerLayer"}]


def test_ids_sort_by_creation_time():
    from mailer.ids import new_id

    ids = [new_id(now_ms=t) for t in (1_000, 2_000, 3_000_000_000_000)]

    assert ids == sorted(ids) and len(set(ids)) == 3 and all(len(i) == 26 for i in ids)


def test_every_route_has_a_sample_event_for_sam_local_invoke():
    import json

    from local.template import ROOT

    sampled = set()
    for path in (ROOT / "events").glob("*.json"):
        event = json.loads(path.read_text())
        if "routeKey" in event and path.name != "api-base.json":
            sampled.add(event["routeKey"])

    assert {f"{r.method} {r.path}" for r in Template().routes()} <= sampled
