"""Write the sample events for `sam local invoke -e events/<name>.json`: `python -m local.make_events`.

One event per API route, built like the local HTTP server builds them, with stable ids so that running
this again changes nothing unless the bodies or the base event change.
"""

from __future__ import annotations

import json
from typing import Any

from local.events import ADMIN, HttpRequest, http_event, json_request
from local.template import ROOT

EVENTS = ROOT / "events"

OFFICE365 = {
    "transport": "smtp",
    "provider": "office365",
    "host": "smtp.office365.com",
    "port": 587,
    "security": "starttls",
    "username": "billing@acme.example",
    "password": "replace-with-the-mailbox-password",
    "from_name": "Acme Plumbing Billing",
    "from_email": "billing@acme.example",
    "bcc": "archive@acme.example",
    "reply_to": None,
    "notify_email": "owner@acme.example",
    "timezone": "America/Chicago",
}

UNSAVED = {k: v for k, v in OFFICE365.items() if k not in ("notify_email", "timezone")} | {
    "to": "owner@acme.example"
}


def samples() -> dict[str, HttpRequest]:
    settings, test = "/settings/{profile}", "/settings/{profile}/test"
    return {
        "providers-get": json_request("GET", "/providers", "/providers"),
        "settings-get": json_request("GET", "/settings/company", settings, profile="company"),
        "settings-put": json_request("PUT", "/settings/company", settings, OFFICE365, profile="company"),
        "settings-delete": json_request("DELETE", "/settings/company", settings, profile="company"),
        "test-saved": json_request(
            "POST", "/settings/company/test", test, {"to": "owner@acme.example"}, profile="company"
        ),
        "test-unsaved": json_request("POST", "/settings/test", "/settings/test", UNSAVED),
    }


def stable(event: dict[str, Any]) -> dict[str, Any]:
    """The request id and time of the base sample, not of this run."""
    base = json.loads((EVENTS / "api-base.json").read_text())["requestContext"]
    for key in ("requestId", "timeEpoch"):
        event["requestContext"][key] = base[key]
    return event


def main() -> None:
    for name, request in samples().items():
        path = EVENTS / f"{name}.json"
        path.write_text(json.dumps(stable(http_event(request, ADMIN)), indent=2) + "\n")
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
