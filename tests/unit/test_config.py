"""Configuration is read once at cold start, validated, and names the variable that is wrong."""

from __future__ import annotations

import pytest

from mailer.config import ConfigError, MailerConfig

BASE = {"SETTINGS_TABLE": "settings", "SENT_LOG_TABLE": "sent", "SECRET_PREFIX": "stack/mail-settings"}


def test_a_complete_environment_gives_typed_values():
    config = MailerConfig.from_env(BASE | {"SMTP_TIMEOUT_SECONDS": "7.5", "LEDGER_TABLE": "ledger"})

    assert config.smtp_timeout_seconds == 7.5 and config.ledger_table == "ledger"
    assert config.sent_log_retention_days == 90


@pytest.mark.parametrize("variable", sorted(BASE))
def test_a_missing_required_variable_is_named(variable):
    env = {k: v for k, v in BASE.items() if k != variable}

    with pytest.raises(ConfigError, match=variable):
        MailerConfig.from_env(env)


@pytest.mark.parametrize("variable", sorted(BASE))
def test_an_empty_table_name_is_missing_not_a_silent_default(variable):
    with pytest.raises(ConfigError, match=variable):
        MailerConfig.from_env(BASE | {variable: ""})


@pytest.mark.parametrize(
    ("variable", "value"),
    [("SMTP_TIMEOUT_SECONDS", "soon"), ("ATTACHMENT_MAX_BYTES", "-1"), ("UPLOAD_URL_TTL_SECONDS", "5")],
)
def test_a_bad_value_names_its_variable(variable, value):
    with pytest.raises(ConfigError, match=variable):
        MailerConfig.from_env(BASE | {variable: value})


def test_a_function_missing_a_variable_it_needs_fails_at_cold_start():
    config = MailerConfig.from_env(BASE)

    with pytest.raises(ConfigError, match="OUTBOX_QUEUE_URL"):
        config.require("work_orders_table", "outbox_queue_url")


def test_a_handler_module_fails_to_import_without_its_bucket(template, function_env, monkeypatch):
    import importlib.util

    monkeypatch.delenv("ATTACHMENTS_BUCKET")
    path, _ = template.handler_path("DocumentEmailFunction")
    spec = importlib.util.spec_from_file_location("cold_document_email", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)

    with pytest.raises(ConfigError, match="ATTACHMENTS_BUCKET"):
        spec.loader.exec_module(module)
