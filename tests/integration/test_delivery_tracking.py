"""Delivery tracking through the handlers under moto: SES events (the documented shapes, the samples
in events/) through TrackingFunction onto the entries SES sends made, repeated and unknown events,
suppression after a hard bounce or a complaint, the delivery_status filter, and opens through the
public pixel route with a real SMTP server on loopback (a forged token records nothing)."""

from __future__ import annotations

import base64
import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.events import FakeContext, Identity
from mailer.tracking.opens import PIXEL_GIF
from tests.support.api import cold_start, load_function
from tests.support.factories import TIMEZONE, smtp_settings
from tests.support.steps import save_settings

EVENTS = Path(__file__).resolve().parents[2] / "events"
ACCOUNT = "billing@acme.example"
PASSWORD = "Corr3ct-Horse-Battery"
DANA = "dana@customer.example"
MARCUS = "marcus@customer.example"
DOCUMENT = {"type": "invoice", "number": "INV-1001", "customer_name": "Dana Whitfield", "amount": "120.00"}
OTHER = Identity(tenant_id="other-co", user_id="admin-2", email="admin@other.example")
PUBLIC_URL = "https://api.acme.test"


def sample(name: str, message_id: str, recipient: str = DANA) -> dict[str, Any]:
    """A sample SES event of events/ for one sent message and recipient."""
    event = json.loads((EVENTS / f"{name}.json").read_text())
    text = json.dumps(event).replace("dana@customer.example", recipient)
    event = json.loads(text)
    event["detail"]["mail"]["messageId"] = message_id
    return event


def track(template, event: dict[str, Any]) -> str:
    return load_function(template, "TrackingFunction").lambda_handler(event, FakeContext())["outcome"]


def ses_id(entry: dict[str, Any]) -> str:
    return re.fullmatch(r"<(.+)@email\.amazonses\.com>", entry["message_id"]).group(1)


def entry_of(api, email_id: str, **kwargs: Any) -> dict[str, Any]:
    status, body, _ = api.call("GET", f"/emails/{email_id}", **kwargs)
    assert status == 200, body
    return body


def send_document(api, to: list[str], **kwargs: Any) -> tuple[int, dict[str, Any]]:
    body = {"document": DOCUMENT, "to": to, "sender": "company"}
    status, answer, _ = api.call("POST", "/documents/email", body, **kwargs)
    return status, answer


@pytest.fixture
def ses_company(api, aws):
    aws.client("sesv2").create_email_identity(EmailIdentity="acme.example")
    return save_settings(
        api, {"transport": "ses", "from_email": ACCOUNT, "ses_region": "us-east-1", "timezone": TIMEZONE}
    )


@pytest.fixture
def sent(api, ses_company) -> dict[str, Any]:
    status, entry = send_document(api, [DANA, MARCUS])
    assert status == 200, entry
    assert entry["delivery_status"] == "sent" and entry["events"] == []
    return entry


# --- SES events ------------------------------------------------------------------------------------


def test_a_delivery_event_marks_the_entry_delivered(api, template, sent):
    assert track(template, sample("ses-delivery", ses_id(sent))) == "recorded"

    entry = entry_of(api, sent["id"])
    assert entry["delivery_status"] == "delivered"
    [event] = entry["events"]
    assert event["type"] == "delivery" and event["at"] == "2026-11-24T15:00:02.480Z"
    assert event["detail"]["recipients"] == [DANA] and event["detail"]["source"] == "ses"


def test_a_repeated_event_changes_nothing(api, template, sent):
    event = sample("ses-delivery", ses_id(sent))
    track(template, event)
    before = entry_of(api, sent["id"])

    assert track(template, copy.deepcopy(event)) == "repeated"
    assert entry_of(api, sent["id"]) == before


def test_a_hard_bounce_marks_bounced_and_suppresses_the_address(api, template, sent):
    assert track(template, sample("ses-bounce", ses_id(sent))) == "recorded"

    entry = entry_of(api, sent["id"])
    assert entry["delivery_status"] == "bounced"
    [event] = entry["events"]
    assert event["detail"]["status"] == "5.1.1" and event["detail"]["permanent"] is True
    assert "user unknown" in event["detail"]["diagnostic"]
    status, body, _ = api.call("GET", "/suppressions")
    assert [(i["email"], i["reason"], i["email_id"]) for i in body["items"]] == [(DANA, "bounce", sent["id"])]
    # the next document email to it is refused, naming the field and why
    status, problem = send_document(api, [DANA])
    assert status == 422
    [error] = problem["errors"]
    assert error["field"] == "to" and "hard bounce" in error["message"]


def test_a_repeated_bounce_keeps_the_first_suppression(api, template, sent):
    track(template, sample("ses-bounce", ses_id(sent)))
    first = api.call("GET", "/suppressions")[1]["items"]

    assert track(template, sample("ses-bounce", ses_id(sent))) == "repeated"
    assert api.call("GET", "/suppressions")[1]["items"] == first


def test_a_soft_bounce_marks_bounced_but_suppresses_nothing(api, template, sent):
    event = sample("ses-bounce", ses_id(sent))
    event["detail"]["bounce"]["bounceType"] = "Transient"
    event["detail"]["bounce"]["bounceSubType"] = "MailboxFull"

    track(template, event)

    assert entry_of(api, sent["id"])["delivery_status"] == "bounced"
    assert api.call("GET", "/suppressions")[1]["items"] == []


def test_a_complaint_marks_complained_and_suppresses(api, template, sent):
    track(template, sample("ses-complaint", ses_id(sent), recipient=MARCUS))

    entry = entry_of(api, sent["id"])
    assert entry["delivery_status"] == "complained"
    items = api.call("GET", "/suppressions")[1]["items"]
    assert [(i["email"], i["reason"]) for i in items] == [(MARCUS, "complaint")]


def test_a_bounce_of_an_address_the_entry_was_not_sent_to_suppresses_nothing(api, template, sent):
    track(template, sample("ses-bounce", ses_id(sent), recipient="someone@else.example"))

    assert entry_of(api, sent["id"])["delivery_status"] == "bounced"
    assert api.call("GET", "/suppressions")[1]["items"] == []


@pytest.mark.parametrize(
    ("names", "status"),
    [
        (["ses-send", "ses-delivery-delay"], "delayed"),
        (["ses-delivery-delay", "ses-delivery"], "delivered"),
        (["ses-delivery", "ses-bounce"], "bounced"),
        (["ses-bounce", "ses-delivery"], "bounced"),
        (["ses-complaint", "ses-bounce"], "complained"),
        (["ses-reject"], "bounced"),
        (["ses-send"], "sent"),
    ],
)
def test_the_delivery_status_is_the_weightiest_event(api, template, sent, names, status):
    for name in names:
        track(template, sample(name, ses_id(sent)))

    entry = entry_of(api, sent["id"])
    assert entry["delivery_status"] == status
    assert [e["type"] for e in entry["events"]] == [
        {"ses-send": "send", "ses-delivery": "delivery", "ses-delivery-delay": "delivery_delay"}.get(
            n, n.removeprefix("ses-")
        )
        for n in names
    ]


def test_an_event_of_mail_this_stack_did_not_send_changes_nothing(api, template, sent):
    assert track(template, sample("ses-bounce", "0100019ad4c3ffff-unknown-000000")) == "unknown"

    assert entry_of(api, sent["id"])["delivery_status"] == "sent"
    assert api.call("GET", "/suppressions")[1]["items"] == []


@pytest.mark.parametrize(
    "event",
    [
        {},
        {
            "source": "aws.ses",
            "detail-type": "Email Rendering Failed",
            "detail": {"eventType": "Rendering Failure"},
        },
        {"source": "aws.ses", "detail": {"eventType": "Bounce", "mail": {}}},
        {"source": "aws.ses", "detail": "not an object"},
        {"source": "aws.ses", "detail": {"eventType": "Bounce", "mail": {"messageId": 7}, "bounce": []}},
    ],
)
def test_events_that_are_not_delivery_events_are_ignored(template, ses_company, event):
    assert track(template, event) == "ignored"


def test_the_sample_events_are_the_documented_shape(template):
    for name in (
        "ses-send",
        "ses-delivery",
        "ses-bounce",
        "ses-complaint",
        "ses-delivery-delay",
        "ses-reject",
    ):
        event = json.loads((EVENTS / f"{name}.json").read_text())
        assert event["source"] == "aws.ses" and event["detail-type"].startswith("Email ")
        assert event["detail"]["mail"]["messageId"]
        pattern = template.functions()["TrackingFunction"]["Properties"]["Events"]["SesEvents"]
        assert event["detail-type"] in pattern["Properties"]["Pattern"]["detail-type"]


def test_the_delivery_status_filter_lists_one_status_of_one_company(api, template, ses_company):
    ids = []
    for _ in range(3):
        status, entry = send_document(api, [DANA])
        assert status == 200
        ids.append(entry["id"])
    track(template, sample("ses-bounce", ses_id(entry_of(api, ids[0]))))
    track(template, sample("ses-delivery", ses_id(entry_of(api, ids[1]))))

    status, page, _ = api.call("GET", "/emails", query={"delivery_status": "bounced"})
    assert status == 200 and [e["id"] for e in page["items"]] == [ids[0]]
    status, page, _ = api.call("GET", "/emails", query={"delivery_status": "sent"})
    assert [e["id"] for e in page["items"]] == [ids[2]]
    status, page, _ = api.call("GET", "/emails", query={"delivery_status": "bounced"}, identity=OTHER)
    assert status == 200 and page["items"] == []
    status, problem, _ = api.call("GET", "/emails", query={"delivery_status": "lost"})
    assert status == 422 and "delivery_status" in json.dumps(problem)


def test_the_filter_pages_with_a_cursor(api, template, ses_company):
    bounced = []
    for _ in range(3):
        _, entry = send_document(api, [DANA])
        bounced.append(entry["id"])
        track(template, sample("ses-bounce", ses_id(entry_of(api, entry["id"]))))
        api.call("DELETE", f"/suppressions/{DANA}")

    first = api.call("GET", "/emails", query={"delivery_status": "bounced", "limit": "2"})[1]
    second = api.call(
        "GET", "/emails", query={"delivery_status": "bounced", "limit": "2", "cursor": first["next_cursor"]}
    )[1]

    assert [e["id"] for e in first["items"] + second["items"]] == bounced[::-1]


def test_the_document_listing_shows_the_latest_status(api, template, sent):
    track(template, sample("ses-delivery", ses_id(sent)))

    _, page, _ = api.call("GET", "/emails", query={"document_type": "invoice", "document_number": "INV-1001"})

    assert [e["delivery_status"] for e in page["items"]] == ["delivered"]


def test_ses_sends_use_the_stack_configuration_set_unless_the_company_names_its_own(aws, function_env):
    from mailer.config import MailerConfig
    from mailer.settings.models import SettingsView
    from mailer.settings.sending import transport_for

    config = MailerConfig.from_env()
    assert config.ses_configuration_set == "local-tracking"
    view = SettingsView(profile="company", transport="ses", from_email=ACCOUNT)
    assert transport_for(view, None, config).configuration_set == "local-tracking"
    own = view.model_copy(update={"ses_configuration_set": "acme-own"})
    assert transport_for(own, None, config).configuration_set == "acme-own"


# --- opens ---------------------------------------------------------------------------------------


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


@pytest.fixture
def public_url(monkeypatch, template):
    monkeypatch.setenv("PUBLIC_API_URL", PUBLIC_URL)
    cold_start(template)
    yield PUBLIC_URL
    cold_start(template)


def smtp_company(api, mail_server, **changes: Any) -> dict[str, Any]:
    return save_settings(api, smtp_settings(ACCOUNT, PASSWORD, port=mail_server.port, **changes))


def pixel_path(message) -> str:
    html = message.parsed().get_body(("html",)).get_content()
    found = re.findall(r'<img src="' + re.escape(PUBLIC_URL) + r'(/t/[^"]+\.gif)"', html)
    assert len(found) == 1, html
    return found[0]


def fetch(api, path: str) -> tuple[int, bytes, dict[str, str]]:
    status, body, headers = api.call("GET", path, identity=None)
    return status, base64.b64decode(body), headers


def test_with_track_opens_the_pixel_records_one_opened_event_with_a_count(
    api, trust_local_ca, mail_server, public_url
):
    smtp_company(api, mail_server, track_opens=True)
    status, sent = send_document(api, [DANA])
    assert status == 200, sent
    [message] = mail_server.messages
    path = pixel_path(message)

    status, gif, headers = fetch(api, path)
    assert (status, gif, headers["content-type"]) == (200, PIXEL_GIF, "image/gif")
    assert "no-store" in headers["cache-control"]
    entry = entry_of(api, sent["id"])
    assert entry["delivery_status"] == "opened"
    [event] = entry["events"]
    assert event["type"] == "opened" and event["detail"]["count"] == 1

    fetch(api, path)
    [event] = entry_of(api, sent["id"])["events"]
    assert event["detail"]["count"] == 2 and event["at"] == entry["events"][0]["at"]


def test_a_forged_token_gets_the_same_gif_and_records_nothing(api, trust_local_ca, mail_server, public_url):
    smtp_company(api, mail_server, track_opens=True)
    status, sent = send_document(api, [DANA])
    path = pixel_path(mail_server.messages[0])
    body, mac = path.removeprefix("/t/").removesuffix(".gif").split(".")
    forged_mac = ("A" if mac[0] != "A" else "B") + mac[1:]
    other_tenant = base64.urlsafe_b64encode(f"other-co\n{sent['id']}".encode()).decode().rstrip("=")

    for forged in (f"/t/{body}.{forged_mac}.gif", f"/t/{other_tenant}.{mac}.gif", "/t/x.gif", "/t/%00.gif"):
        status, gif, headers = fetch(api, forged)
        assert (status, gif, headers["content-type"]) == (200, PIXEL_GIF, "image/gif"), forged

    assert entry_of(api, sent["id"])["events"] == []
    assert entry_of(api, sent["id"])["delivery_status"] == "sent"


def test_without_track_opens_no_pixel_is_added(api, trust_local_ca, mail_server, public_url):
    smtp_company(api, mail_server)
    send_document(api, [DANA])

    html = mail_server.messages[0].parsed().get_body(("html",)).get_content()
    assert "/t/" not in html and "<img" not in html


def test_test_mail_never_carries_the_pixel(api, trust_local_ca, mail_server, public_url):
    smtp_company(api, mail_server, track_opens=True)

    status, body, _ = api.call("POST", "/settings/company/test", {"to": DANA})

    assert status == 200 and body["ok"] is True, body
    raw = mail_server.messages[0].data.decode("utf-8", "replace")
    assert "/t/" not in raw


def test_track_opens_is_a_company_setting(api, trust_local_ca, mail_server):
    status, problem, _ = api.call(
        "PUT", "/settings/me", smtp_settings(ACCOUNT, PASSWORD, port=mail_server.port, track_opens=True)
    )
    assert status == 422 and [e["field"] for e in problem["errors"]] == ["track_opens"]
    assert smtp_company(api, mail_server)["track_opens"] is False
    assert smtp_company(api, mail_server, track_opens=True)["track_opens"] is True
    assert api.call("GET", "/settings/company")[1]["track_opens"] is True


def test_a_text_only_message_gets_no_pixel():
    from mailer.delivery.message import Sender, build_message
    from mailer.tracking.opens import OpenPixel, OpenTokens

    pixel = OpenPixel(OpenTokens(lambda: "k" * 64), PUBLIC_URL)
    text_only = build_message(sender=Sender(ACCOUNT), to=[DANA], subject="Hello", text="Plain words.")
    with_html = build_message(sender=Sender(ACCOUNT), to=[DANA], subject="Hello", text="x", html="<p>x</p>")

    assert pixel.add(text_only, "demo", "E1").as_bytes() == text_only.as_bytes()
    tracked = pixel.add(with_html, "demo", "E1")
    assert tracked.as_bytes().count(b"/t/") == 1
    assert tracked.message.get_body(("plain",)).get_content().strip() == "x"


def test_tokens_name_one_entry_of_one_company():
    from mailer.tracking.opens import OpenTokens

    tokens = OpenTokens(lambda: "k" * 64)
    token = tokens.token("demo", "01ENTRY")

    assert tokens.read(token) == ("demo", "01ENTRY")
    assert OpenTokens(lambda: "another key").read(token) is None
    assert tokens.read(token + "x") is None and tokens.read("") is None and tokens.read("a" * 5000) is None


def test_automated_email_carries_the_pixel_of_its_own_entry(
    api, trust_local_ca, mail_server, public_url, outbox
):
    from tests.support.steps import activate_document_event, raise_event

    smtp_company(api, mail_server, track_opens=True)
    activate_document_event(api, "shipment.shipped")
    answer = raise_event(api, "shipment.shipped", DOCUMENT | {"type": "packing_slip"}, [DANA])
    assert outbox.drain() == []
    [message] = mail_server.messages

    fetch(api, pixel_path(message))

    entry = entry_of(api, answer["email_id"])
    assert entry["delivery_status"] == "opened" and entry["events"][0]["detail"]["count"] == 1
