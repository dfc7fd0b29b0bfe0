"""The settings model: presets, derived port and security, cross-field rules, warnings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mailer.errors import InvalidInput
from mailer.settings.models import SettingsInput, SettingsView, settings_warnings


def settings(**fields) -> SettingsInput:
    return SettingsInput.model_validate({"from_email": "billing@acme.example"} | fields)


@pytest.mark.parametrize(
    ("provider", "host", "port", "security"),
    [
        ("office365", "smtp.office365.com", 587, "starttls"),
        ("gmail", "smtp.gmail.com", 587, "starttls"),
        ("yahoo", "smtp.mail.yahoo.com", 465, "ssl"),
        ("ses_smtp_eu_west_1", "email-smtp.eu-west-1.amazonaws.com", 587, "starttls"),
    ],
)
def test_provider_preset_fills_the_server(provider, host, port, security):
    s = settings(provider=provider)

    assert (s.host, s.port, s.security) == (host, port, security)


def test_port_and_security_imply_each_other():
    assert settings(host="mail.acme.example", port=465).security == "ssl"
    assert settings(host="mail.acme.example", security="ssl").port == 465
    assert settings(host="mail.acme.example").port == 587


def test_preset_does_not_override_what_the_user_chose():
    s = settings(provider="gmail", port=465, security="ssl")

    assert (s.host, s.port, s.security) == ("smtp.gmail.com", 465, "ssl")


def test_password_is_a_secret_that_never_prints():
    s = settings(host="h.example", username="u@acme.example", password="Hunter2-Hunter2")

    assert "Hunter2" not in repr(s) and "Hunter2" not in str(s.model_dump())


def test_addresses_are_normalised_and_reserved_test_domain_allowed():
    assert settings(from_email="Billing@ACME.Example").from_email == "Billing@acme.example"
    assert settings(from_email="admin@demo.test").from_email == "admin@demo.test"


def test_cross_field_rules_name_every_field():
    s = settings(transport="smtp", password="x", bcc="BILLING@acme.example", timezone="UTC")

    with pytest.raises(InvalidInput) as caught:
        s.check("me", password_saved=False)

    fields = sorted(e.field for e in caught.value.errors)
    assert fields == ["bcc", "host", "timezone", "username"]


def test_validation_error_never_echoes_the_password_value():
    with pytest.raises(ValidationError) as caught:
        settings(host="h.example", password="x" * 2000)

    assert "xxxxxxxx" not in str(caught.value.errors(include_input=False))


@pytest.mark.parametrize(
    ("fields", "warned"),
    [
        ({"port": 465, "security": "starttls"}, "security"),
        ({"port": 587, "security": "ssl"}, "security"),
        ({"security": "none", "username": "u@acme.example", "password_set": True}, "security"),
        ({"port": 25}, "port"),
        ({"username": "someone@other.example", "password_set": True}, "from_email"),
        ({"provider": "gmail", "host": "smtp.googlemail.com"}, "host"),
        ({"username": "billing@acme.example", "password_set": False}, "password"),
    ],
)
def test_doubtful_combinations_are_warned(fields, warned):
    view = SettingsView.model_validate(
        {"profile": "company", "transport": "smtp", "host": "mail.acme.example", "port": 587}
        | {"security": "starttls", "from_email": "billing@acme.example", "from_name": "Acme"}
        | fields
    )

    assert warned in [w.field for w in settings_warnings(view)]


def sound_setup(**changes) -> SettingsView:
    fields = {
        "profile": "company",
        "transport": "smtp",
        "provider": "fastmail",
        "host": "smtp.fastmail.com",
        "port": 465,
        "security": "ssl",
        "username": "billing@acme.example",
        "password_set": True,
        "from_name": "Acme",
        "from_email": "billing@acme.example",
    }
    return SettingsView.model_validate(fields | changes)


def test_a_sound_setup_has_no_warnings():
    assert settings_warnings(sound_setup()) == []


def test_a_microsoft_365_password_warns_that_basic_auth_ends_and_names_the_oauth_connection():
    view = sound_setup(provider="office365", host="smtp.office365.com", port=587, security="starttls")

    (warning,) = settings_warnings(view)

    assert warning.field == "auth" and "December 2026" in warning.message
    assert "/oauth/microsoft/start" in warning.message


def test_a_gmail_password_warns_about_app_passwords_and_names_the_google_connection():
    view = sound_setup(provider="gmail", host="smtp.gmail.com", port=587, security="starttls")

    (warning,) = settings_warnings(view)

    assert warning.field == "auth" and "app password" in warning.message
    assert "/oauth/google/start" in warning.message


def test_an_oauth_profile_at_microsoft_has_no_password_warning():
    view = sound_setup(
        provider="office365",
        host="smtp.office365.com",
        port=587,
        security="starttls",
        auth="oauth",
        password_set=False,
    )

    assert [w.field for w in settings_warnings(view)] == []
