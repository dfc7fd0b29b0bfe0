"""The demo tenant, seeded through the real handlers: company settings, automations, work orders."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from local import demo_data
from local.events import ADMIN, http_event, json_request
from local.handlers import Functions
from local.http_server import match_route
from local.stack_config import HOST, StackConfig
from local.template import Template

TENANT = "demo"
FROM_EMAIL = "billing@demo.test"


def demo_settings(config: StackConfig) -> dict[str, Any]:
    """Company settings of the demo tenant: the local SMTP server, as an admin would save them."""
    return {
        "transport": "smtp",
        "host": HOST,
        "port": config.smtp_port,
        "security": "starttls",
        "username": config.smtp_username,
        "password": config.smtp_password,
        "from_name": "Demo Plumbing & Heating",
        "from_email": FROM_EMAIL,
        "timezone": demo_data.TIMEZONE,
        "notify_email": "owner@demo.test",
    }


def seed_call(functions: Functions, template: Template, method: str, path: str, body: Any = None) -> Any:
    """One request to the real handler as the demo admin, without HTTP and in this process (the API's
    worker processes may still be starting); the decoded JSON answer."""
    match = match_route(template.routes(), method, path)
    if match.route is None:
        raise RuntimeError(f"template.yaml has no route for {method} {path}")
    request = json_request(method, path, match.route.path, body, **match.path_parameters)
    result = functions.invoke_here(match.route.function, http_event(request, ADMIN))
    if result.get("statusCode") != 200:
        raise RuntimeError(f"seeding the demo tenant failed: {method} {path} answered {result}")
    return json.loads(result.get("body") or "null")


def seed_demo_tenant(functions: Functions, template: Template, config: StackConfig) -> date:
    """Through the real handlers, so the password goes to Secrets Manager, the active reminder to the
    index the noon run reads, and the work orders to the reminder index, as in production.

    Returns the day the demo work orders were placed around.
    """

    def call(method: str, path: str, body: Any = None) -> Any:
        return seed_call(functions, template, method, path, body)

    call("PUT", "/settings/company", demo_settings(config))
    for automation_type in demo_data.AUTOMATION_TYPES:
        path = f"/automations/{automation_type}"
        call("PUT", path, demo_data.activated(call("GET", path)))
    today = demo_data.today_in(demo_settings(config)["timezone"])
    for work_order_id, body in demo_data.demo_work_orders(today).items():
        call("PUT", f"/work-orders/{work_order_id}", body)
    return today
