"""The local stack as a user sees it: real HTTP to the real handlers, real SMTP, moto for AWS."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
import requests

from local.seed import demo_settings
from local.stack import LocalStack, start_stack
from local.stack_config import StackConfig
from local.template import ROOT
from tests.support.stack import running_stack, stack_config

PROBLEM_JSON = "application/problem+json"
NON_ADMIN = {"X-User-Id": "tech-1", "X-User-Email": "tech@demo.test", "X-User-Groups": ""}

COMPANY_ONLY = ("notify_email", "timezone", "track_opens")  # refused on a user's own settings


def port_is_free(port: int) -> bool:
    """As a new server would bind it (SO_REUSEADDR: closed connections in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            sock.listen()
        except OSError:
            return False
    return True


def problem(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "errors"} <= body.keys()
    return body


@pytest.fixture(scope="class")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One stack for the class; moto's state is per process, so no other stack runs meanwhile."""
    with running_stack(tmp_path_factory.mktemp("stack")) as stack:
        yield stack


@pytest.fixture(scope="class")
def http(stack: LocalStack) -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


class TestWhatAUserSees:
    def url(self, stack: LocalStack, path: str) -> str:
        return stack.api_url + path

    def test_providers_include_office365(self, stack: LocalStack, http: requests.Session) -> None:
        response = http.get(self.url(stack, "/providers"))

        assert response.status_code == 200
        office365 = next(p for p in response.json() if p["id"] == "office365")
        assert office365["host"] == "smtp.office365.com"
        assert response.headers["access-control-allow-origin"] == "*"

    def test_company_settings_are_seeded_without_the_password(
        self, stack: LocalStack, http: requests.Session
    ) -> None:
        response = http.get(self.url(stack, "/settings/company"))

        assert response.status_code == 200
        body = response.json()
        assert body["password_set"] is True
        assert "password" not in body
        assert stack.config.smtp_password not in response.text
        assert body["host"] in ("localhost", "127.0.0.1")
        assert (body["port"], body["security"]) == (stack.smtp_port, "starttls")
        assert body["username"] == "billing@demo.test"
        assert (body["from_name"], body["from_email"]) == ("Demo Plumbing & Heating", "billing@demo.test")
        assert (body["timezone"], body["notify_email"]) == ("America/Chicago", "owner@demo.test")

    def test_saved_settings_test_arrives_over_tls_with_auth(
        self, stack: LocalStack, http: requests.Session
    ) -> None:
        assert stack.smtp is not None
        before = len(stack.smtp.messages)

        response = http.post(self.url(stack, "/settings/company/test"), json={"to": "you@demo.test"})

        assert response.status_code == 200
        assert response.json()["ok"] is True, response.text
        (received,) = stack.smtp.messages[before:]
        assert received.rcpt_tos == ("you@demo.test",)
        assert received.tls is True
        assert received.auth_user == "billing@demo.test"
        assert received.path is not None and received.path.parent == stack.mail_dir
        message = message_from_bytes(received.path.read_bytes(), policy=policy.default)
        assert str(message["From"]) == "Demo Plumbing & Heating <billing@demo.test>"
        assert message["To"] == "you@demo.test"
        assert message["Message-ID"] == response.json()["message_id"]

    def test_wrong_password_is_auth_failed_with_a_hint(
        self, stack: LocalStack, http: requests.Session
    ) -> None:
        body = {k: v for k, v in demo_settings(stack.config).items() if k not in COMPANY_ONLY}

        response = http.post(self.url(stack, "/settings/test"), json=body | {"password": "wrong"})

        assert response.status_code == 200
        result = response.json()
        assert (result["ok"], result["category"], result["stage"]) == (False, "auth_failed", "auth")
        assert result["smtp_code"] == 535
        assert "app password" in result["hint"]

    def test_non_admin_cannot_change_company_settings(
        self, stack: LocalStack, http: requests.Session
    ) -> None:
        body = demo_settings(stack.config) | {"from_name": "Not Allowed"}

        response = http.put(self.url(stack, "/settings/company"), json=body, headers=NON_ADMIN)

        problem(response, 403)
        assert http.get(self.url(stack, "/settings/company")).json()["from_name"] == "Demo Plumbing & Heating"

    def test_a_user_saves_their_own_settings(self, stack: LocalStack, http: requests.Session) -> None:
        body = {k: v for k, v in demo_settings(stack.config).items() if k not in COMPANY_ONLY}

        response = http.put(self.url(stack, "/settings/me"), json=body, headers=NON_ADMIN)

        assert response.status_code == 200, response.text
        assert response.json()["updated_by"] == "tech@demo.test"
        mine = http.get(self.url(stack, "/settings/me"), headers=NON_ADMIN)
        assert mine.json()["password_set"] is True
        assert http.get(self.url(stack, "/settings/me")).status_code == 404  # the admin has none

    @pytest.mark.parametrize(
        ("change", "field"),
        [({"port": "not-a-port"}, "port"), ({"from_name": "Demo\r\nBcc: victim@example.com"}, "from_name")],
    )
    def test_invalid_settings_are_422_naming_the_field(
        self, stack: LocalStack, http: requests.Session, change: dict[str, Any], field: str
    ) -> None:
        body = demo_settings(stack.config) | change

        response = http.put(self.url(stack, "/settings/company"), json=body)

        errors = problem(response, 422)["errors"]
        assert field in [e["field"] for e in errors]

    def test_malformed_json_is_422(self, stack: LocalStack, http: requests.Session) -> None:
        response = http.put(
            self.url(stack, "/settings/company"),
            data=b"{not json",
            headers={"content-type": "application/json"},
        )

        problem(response, 422)

    def test_identity_comes_from_headers(self, stack: LocalStack, http: requests.Session) -> None:
        problem(http.get(self.url(stack, "/settings/company"), headers={"X-Tenant-Id": ""}), 403)
        other_tenant = http.get(self.url(stack, "/settings/company"), headers={"X-Tenant-Id": "acme"})
        problem(other_tenant, 404)

    def test_openapi_and_docs(self, stack: LocalStack, http: requests.Session) -> None:
        response = http.get(self.url(stack, "/openapi.json"))

        assert response.status_code == 200
        document = json.loads(response.text)
        assert document["openapi"].startswith("3.")
        assert {"/settings/{profile}", "/settings/test", "/settings/{profile}/test", "/providers"} <= set(
            document["paths"]
        )
        assert document["servers"][0]["url"] == stack.api_url
        assert "SettingsInput" in document["components"]["schemas"]
        docs = http.get(self.url(stack, "/docs"))
        assert docs.status_code == 200
        assert docs.headers["content-type"].startswith("text/html")
        assert "/openapi.json" in docs.text and "SwaggerUIBundle" in docs.text
        script = re.search(r'<script src="(/[^"]+)"', docs.text)
        if script:  # served from Powertools' copy of Swagger UI, so /docs works offline
            assert http.get(self.url(stack, script.group(1))).status_code == 200

    def test_unknown_route_and_wrong_method(self, stack: LocalStack, http: requests.Session) -> None:
        problem(http.get(self.url(stack, "/nothing/here")), 404)
        wrong_method = http.delete(self.url(stack, "/providers"))
        problem(wrong_method, 405)
        assert wrong_method.headers["allow"] == "GET"

    def test_cors_preflight(self, stack: LocalStack, http: requests.Session) -> None:
        response = http.options(
            self.url(stack, "/settings/company"),
            headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "PUT"},
        )

        assert response.status_code == 204
        assert response.headers["access-control-allow-origin"] == "*"
        allowed = response.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "x-tenant-id", "x-user-groups"} <= set(allowed.split(", "))

    @pytest.mark.parametrize("name", ["providers-get", "settings-get", "settings-put", "settings-delete"])
    def test_sample_events_run_on_the_real_handlers(self, stack: LocalStack, name: str) -> None:
        """The events/ samples for `sam local invoke`, replayed in a tenant of their own."""
        assert stack.functions is not None
        event = json.loads((ROOT / "events" / f"{name}.json").read_text())
        event["requestContext"]["authorizer"]["jwt"]["claims"]["custom:tenant_id"] = "samples"
        route = next(r for r in stack.template.routes() if f"{r.method} {r.path}" == event["routeKey"])
        if name in ("settings-get", "settings-delete"):
            put = json.loads((ROOT / "events" / "settings-put.json").read_text())
            put["requestContext"]["authorizer"]["jwt"]["claims"]["custom:tenant_id"] = "samples"
            assert stack.functions.invoke(route.function, put)["statusCode"] == 200

        result = stack.functions.invoke(route.function, event)

        assert result["statusCode"] == (204 if name == "settings-delete" else 200), result

    def test_sample_events_name_template_routes(self, stack: LocalStack) -> None:
        routes = {f"{r.method} {r.path}": r for r in stack.template.routes()}
        samples = sorted((ROOT / "events").glob("*-*.json"))
        assert {"settings-get", "settings-put", "test-saved", "test-unsaved"} <= {p.stem for p in samples}
        for path in samples:
            event = json.loads(path.read_text())
            if "routeKey" not in event:
                continue  # the schedule and the queue events of the functions behind no route
            route = routes.get(event["routeKey"])
            assert route is not None, f"{path.name}: {event['routeKey']} is not in template.yaml"
            assert route.pattern.match(event["rawPath"]), path.name

    def test_handler_crash_is_a_500_problem(self, stack: LocalStack, http: requests.Session) -> None:
        assert stack.functions is not None and stack.api is not None
        functions, broken = stack.functions, stack.functions.invoke

        def explode(logical_id: str, event: dict[str, Any]) -> Any:
            raise RuntimeError("boom")

        functions.invoke = explode  # type: ignore[method-assign]
        try:
            problem(http.get(self.url(stack, "/providers")), 500)
        finally:
            functions.invoke = broken  # type: ignore[method-assign]
        assert http.get(self.url(stack, "/providers")).status_code == 200

    def test_function_that_failed_to_import_answers_500(
        self, stack: LocalStack, http: requests.Session
    ) -> None:
        assert stack.functions is not None
        logical = next(r.function for r in stack.template.routes() if r.path == "/providers")
        stack.functions.import_errors[logical] = "KeyError: 410"
        try:
            body = problem(http.get(self.url(stack, "/providers")), 500)
        finally:
            del stack.functions.import_errors[logical]
        assert logical in body["detail"] and "KeyError: 410" in body["detail"]


def test_stop_frees_every_port(tmp_path: Path) -> None:
    config = stack_config(tmp_path)
    stack = start_stack(config, out=lambda line: None)
    assert requests.get(f"{stack.api_url}/providers", timeout=10).status_code == 200
    environment_during = os.environ["AWS_ENDPOINT_URL"]

    stack.stop()

    for port in (config.api_port, config.smtp_port, config.moto_port):
        assert port_is_free(port), port
    assert os.environ.get("AWS_ENDPOINT_URL") != environment_during
    stack.stop()  # a second stop is harmless


def test_a_taken_port_is_named(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        config = StackConfig(**{**stack_config(tmp_path).__dict__, "moto_port": taken.getsockname()[1]})
        with pytest.raises(OSError, match="MOTO_PORT"):
            start_stack(config, out=lambda line: None)


def test_make_run_starts_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = stack_config(tmp_path)
    env = {
        **os.environ,
        "API_PORT": str(config.api_port),
        "SMTP_PORT": str(config.smtp_port),
        "MOTO_PORT": str(config.moto_port),
        "MAIL_DIR": str(config.mail_dir),
        "TLS_DIR": str(config.tls_dir),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("MAILER_EXTRA_CA_BUNDLE", None)
    api = f"http://127.0.0.1:{config.api_port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "local.run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    printed: list[str] = []  # stdout and stderr, each read as it comes (the banner first of all)
    errors: list[str] = []
    readers = [
        threading.Thread(target=lambda: printed.extend(process.stdout or ()), daemon=True),
        threading.Thread(target=lambda: errors.extend(process.stderr or ()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any(f"{api}/docs" in line for line in list(printed)):  # the banner: the stack is up
            assert process.poll() is None, "".join(errors)
            assert time.monotonic() < deadline, "the stack printed no banner within 30 s"
            time.sleep(0.2)
        assert requests.get(f"{api}/providers", timeout=5).status_code == 200
        sent = requests.post(f"{api}/settings/company/test", json={"to": "you@demo.test"}, timeout=30)
        assert sent.json()["ok"] is True, sent.text

        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        for reader in readers:
            reader.join(10)
        stdout, stderr = "".join(printed), "".join(errors)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)

    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert api in stdout
    assert f"{api}/docs" in stdout
    assert "you@demo.test" in stdout  # the line printed for the message received
    assert list(config.mail_dir.glob("*.eml"))
