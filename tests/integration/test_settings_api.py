"""Settings API under moto: what the frontend sees, and what is (and is not) stored."""

from __future__ import annotations

import json

import pytest

from local.events import ADMIN, USER, Identity

SECRET_PREFIX = "local/mail-settings"

OFFICE365 = {
    "provider": "office365",
    "username": "billing@acme.example",
    "password": "Sup3r-Secret-Pa55",
    "from_name": "Acme Billing",
    "from_email": "billing@acme.example",
    "bcc": "archive@acme.example",
    "notify_email": "owner@acme.example",
    "timezone": "America/Chicago",
}


def secret_value(aws, name: str) -> str:
    return aws.client("secretsmanager").get_secret_value(SecretId=name)["SecretString"]


def settings_items(aws) -> list[dict]:
    return aws.client("dynamodb").scan(TableName="local-SettingsTable")["Items"]


def test_saved_settings_come_back_without_the_password(api, aws):
    status, body, headers = api.call("PUT", "/settings/company", OFFICE365)

    assert status == 200
    assert headers["content-type"] == "application/json"
    assert body["password_set"] is True
    assert "password" not in body
    assert body["host"] == "smtp.office365.com" and body["port"] == 587 and body["security"] == "starttls"
    assert body["updated_by"] == "admin@demo.test"
    status, again, _ = api.call("GET", "/settings/company")
    assert status == 200
    assert {k: v for k, v in again.items() if k != "warnings"} == {
        k: v for k, v in body.items() if k != "warnings"
    }


def test_password_lives_in_secrets_manager_not_dynamodb(api, aws):
    api.call("PUT", "/settings/company", OFFICE365)

    assert secret_value(aws, f"{SECRET_PREFIX}/demo/company") == OFFICE365["password"]
    assert OFFICE365["password"] not in json.dumps(settings_items(aws))


def test_password_left_out_on_update_keeps_the_saved_one(api, aws):
    api.call("PUT", "/settings/company", OFFICE365)
    update = {k: v for k, v in OFFICE365.items() if k != "password"} | {"from_name": "Acme Accounts"}

    status, body, _ = api.call("PUT", "/settings/company", update)

    assert status == 200
    assert body["password_set"] is True and body["from_name"] == "Acme Accounts"
    assert secret_value(aws, f"{SECRET_PREFIX}/demo/company") == OFFICE365["password"]


def test_first_save_with_username_but_no_password_names_password(api, aws):
    status, body, _ = api.call(
        "PUT", "/settings/company", {k: v for k, v in OFFICE365.items() if k != "password"}
    )

    assert status == 422
    assert [e["field"] for e in body["errors"]] == ["password"]
    assert settings_items(aws) == []


def test_non_admin_cannot_change_company_settings(api, aws):
    status, body, headers = api.call("PUT", "/settings/company", OFFICE365, identity=USER)

    assert status == 403
    assert headers["content-type"] == "application/problem+json"
    assert body["status"] == 403 and "administrator" in body["detail"]
    assert settings_items(aws) == []


def test_non_admin_reads_company_settings_without_password(api):
    api.call("PUT", "/settings/company", OFFICE365)

    status, body, _ = api.call("GET", "/settings/company", identity=USER)

    assert status == 200 and body["password_set"] is True and "password" not in body


def test_user_settings_belong_to_that_user_only(api, aws):
    mine = {"host": "smtp.gmail.com", "username": "tech@gmail.com", "password": "abcd efgh ijkl mnop"}
    status, _, _ = api.call("PUT", "/settings/me", mine | {"from_email": "tech@gmail.com"}, identity=USER)
    assert status == 200

    assert api.call("GET", "/settings/me", identity=USER)[1]["username"] == "tech@gmail.com"
    assert api.call("GET", "/settings/me", identity=ADMIN)[0] == 404
    assert secret_value(aws, f"{SECRET_PREFIX}/demo/user/user-1") == "abcd efgh ijkl mnop"


def test_tenants_never_see_each_other(api):
    api.call("PUT", "/settings/company", OFFICE365)
    other = Identity(tenant_id="other-co", user_id="boss", email="boss@other.example")

    status, body, _ = api.call("GET", "/settings/company", identity=other)

    assert status == 404 and body["title"] == "Not found"


def test_missing_tenant_claim_is_403_and_missing_identity_is_401(api):
    no_tenant = Identity(tenant_id=None, user_id="u1", email="u1@x.example")

    assert api.call("GET", "/settings/company", identity=no_tenant)[0] == 403
    assert api.call("GET", "/settings/company", identity=None)[0] == 401
    assert api.call("GET", "/providers", identity=None)[0] == 401


@pytest.mark.parametrize("field", ["from_name", "username", "ses_configuration_set"])
def test_line_break_in_a_header_field_is_422_naming_it(api, aws, field):
    status, body, headers = api.call(
        "PUT", "/settings/company", OFFICE365 | {field: "Acme\r\nBcc: victim@x.example"}
    )

    assert status == 422
    assert headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in body["errors"]] == [field]
    assert "line break" in body["errors"][0]["message"]
    assert settings_items(aws) == []


@pytest.mark.parametrize("field", ["from_email", "bcc", "reply_to", "notify_email"])
def test_line_break_in_an_address_is_422_naming_it(api, field):
    status, body, _ = api.call(
        "PUT", "/settings/company", OFFICE365 | {field: "a@acme.example\nBcc: v@x.example"}
    )

    assert status == 422 and [e["field"] for e in body["errors"]] == [field]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"port": 70000}, "port"),
        ({"port": "five"}, "port"),
        ({"security": "tls"}, "security"),
        ({"from_email": "not-an-address"}, "from_email"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"provider": "aol-classic"}, "provider"),
        ({"host": "smtp..bad"}, "host"),
        ({"transport": "carrier-pigeon"}, "transport"),
        ({"unexpected": True}, "unexpected"),
    ],
)
def test_invalid_field_is_422_naming_it(api, change, field):
    status, body, _ = api.call("PUT", "/settings/company", OFFICE365 | change)

    assert status == 422
    assert field in [e["field"] for e in body["errors"]]


def test_bcc_equal_to_from_is_refused(api):
    status, body, _ = api.call("PUT", "/settings/company", OFFICE365 | {"bcc": "Billing@Acme.example"})

    assert status == 422 and [e["field"] for e in body["errors"]] == ["bcc"]


def test_time_zone_and_notify_address_belong_to_company_settings(api):
    status, body, _ = api.call("PUT", "/settings/me", OFFICE365, identity=USER)

    assert status == 422
    assert sorted(e["field"] for e in body["errors"]) == ["notify_email", "timezone"]


def test_unknown_profile_is_422_naming_profile(api):
    status, body, _ = api.call("GET", "/settings/everyone")

    assert status == 422 and [e["field"] for e in body["errors"]] == ["profile"]


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "null",
        "[]",
        "{",
        '"text"',
        "42",
        '{"port": {"$gt": 1}}',
        "\x00\xff\xfe",
        '{"from_email": null}',
        "[" * 5000,
    ],
)
def test_malformed_body_is_a_clear_4xx_never_500(api, aws, raw):
    status, body, headers = api.call("PUT", "/settings/company", raw_body=raw)

    assert 400 <= status < 500
    assert headers["content-type"] == "application/problem+json"
    assert body["errors"], body
    assert settings_items(aws) == []


def test_doubtful_combinations_are_saved_with_warnings(api):
    status, body, _ = api.call(
        "PUT",
        "/settings/company",
        OFFICE365 | {"provider": None, "host": "mail.acme.example", "port": 465, "security": "starttls"},
    )

    assert status == 200
    assert "security" in [w["field"] for w in body["warnings"]]


def test_delete_removes_settings_and_password(api, aws):
    api.call("PUT", "/settings/company", OFFICE365)

    status, body, _ = api.call("DELETE", "/settings/company")

    assert status == 204 and body == ""
    assert api.call("GET", "/settings/company")[0] == 404
    assert password_secrets(aws) == []
    assert api.call("DELETE", "/settings/company")[0] == 404


def test_settings_can_be_saved_again_right_after_delete(api, aws):
    api.call("PUT", "/settings/company", OFFICE365)
    api.call("DELETE", "/settings/company")

    status, body, _ = api.call("PUT", "/settings/company", OFFICE365 | {"password": "N3w-Pa55word"})

    assert status == 200 and body["password_set"] is True
    assert secret_value(aws, f"{SECRET_PREFIX}/demo/company") == "N3w-Pa55word"


def test_switching_to_ses_drops_the_smtp_password(api, aws):
    api.call("PUT", "/settings/company", OFFICE365)

    status, body, _ = api.call(
        "PUT",
        "/settings/company",
        {"transport": "ses", "from_email": "billing@acme.example", "ses_region": "us-east-1"},
    )

    assert status == 200 and body["password_set"] is False and body["transport"] == "ses"
    assert password_secrets(aws) == []


def test_providers_lists_presets_with_hints(api):
    status, body, _ = api.call("GET", "/providers")

    assert status == 200
    by_id = {p["id"]: p for p in body}
    for expected in (
        "office365",
        "outlook",
        "gmail",
        "gmail_relay",
        "ses_smtp_us_east_1",
        "smtp2go",
        "yahoo",
        "zoho",
    ):
        assert expected in by_id
    assert by_id["gmail"]["host"] == "smtp.gmail.com" and "app password" in by_id["gmail"]["hint"]
    assert set(by_id["office365"]) == {"id", "name", "host", "port", "security", "hint", "limits"}
    assert by_id["office365"]["limits"] == {"per_minute": 30, "per_day": 10_000, "connections": 3}
    assert by_id["gmail"]["limits"] == {"per_minute": None, "per_day": 2_000, "connections": None}


def test_dynamodb_outage_is_503_not_500(api, aws, monkeypatch):
    from botocore.exceptions import ClientError

    from mailer.dal.settings_table import SettingsStore

    def throttled(*_args, **_kwargs):
        raise ClientError(
            {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow"}}, "GetItem"
        )

    monkeypatch.setattr(
        SettingsStore, "_table", property(lambda _self: type("T", (), {"get_item": throttled})())
    )

    status, body, _ = api.call("GET", "/settings/company")

    assert status == 503 and "try again" in body["detail"]


def password_secrets(aws):
    """The secrets holding saved passwords (the stack's own, such as the pixel key, are not)."""
    listed = aws.client("secretsmanager").list_secrets()["SecretList"]
    return [s["Name"] for s in listed if s["Name"].startswith(SECRET_PREFIX)]
