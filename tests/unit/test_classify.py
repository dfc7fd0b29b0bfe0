"""classify_smtp_error and classify_ses_error alone: provider advice, cases no loopback server shows."""

from __future__ import annotations

import errno
import smtplib
import socket
import ssl

import pytest

from mailer.delivery.classify import (
    Category,
    ServerContext,
    classify_ses_error,
    classify_smtp_error,
    insecure_auth_refused,
    starttls_unavailable,
)
from mailer.delivery.classify.hints import HINTS, Hint
from mailer.delivery.classify.ses import SES_RULES, ses_rule_for
from mailer.delivery.classify.smtp import SMTP_RULES, Rule, rule_for


def ctx(host: str = "mail.example.net", port: int = 587, security: str = "starttls") -> ServerContext:
    return ServerContext(
        host=host,
        port=port,
        security=security,
        username="billing@acme.example",
        from_email="billing@acme.example",
    )


def smtplib_read_timeout() -> smtplib.SMTPServerDisconnected:
    """What smtplib.SMTP.getreply() raises when the server does not answer in time: it catches the
    TimeoutError (an OSError) and raises SMTPServerDisconnected inside that `except`."""
    wrapped = smtplib.SMTPServerDisconnected("Connection unexpectedly closed: timed out")
    wrapped.__context__ = TimeoutError("timed out")
    return wrapped


# --- auth advice per provider ----------------------------------------------------------------------

BAD_LOGIN = smtplib.SMTPAuthenticationError(535, b"5.7.8 Username and Password not accepted")


@pytest.mark.parametrize(
    ("host", "keyword"),
    [
        ("smtp.gmail.com", "myaccount.google.com/apppasswords"),
        ("smtp-relay.gmail.com", "smtp-relay.gmail.com"),
        ("SMTP.Gmail.com.", "myaccount.google.com/apppasswords"),
        ("smtp.office365.com", "Authenticated SMTP"),
        ("smtp-mail.outlook.com", "Authenticated SMTP"),
        ("eur.mail.protection.outlook.com", "Authenticated SMTP"),
        ("email-smtp.eu-west-1.amazonaws.com", "SMTP credentials"),
        ("email-smtp.ap-south-1.amazonaws.com", "SMTP credentials"),
        ("smtp.mail.yahoo.com", "Generate app password"),
        ("smtp.zoho.com", "App Passwords"),
    ],
)
def test_auth_failure_at_known_provider_gives_that_providers_advice(host, keyword):
    failure = classify_smtp_error(BAD_LOGIN, "auth", ctx(host))

    assert (failure.category, failure.stage, failure.smtp_code) == ("auth_failed", "auth", 535)
    assert keyword in failure.hint


def test_auth_failure_at_unknown_server_suggests_an_app_password():
    failure = classify_smtp_error(BAD_LOGIN, "auth", ctx("mail.example.net"))

    assert "app password" in failure.hint and "billing@acme.example" in failure.hint


def test_non_ascii_password_is_auth_failed_with_ascii_advice():
    failure = classify_smtp_error(UnicodeEncodeError("ascii", "pässword", 1, 2, "no"), "auth", ctx())

    assert failure.category == "auth_failed" and "ASCII" in failure.hint


# --- connect ---------------------------------------------------------------------------------------


def test_unknown_host_name_is_dns_and_not_transient():
    failure = classify_smtp_error(
        socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "connect", ctx()
    )

    assert (failure.category, failure.stage, failure.transient) == ("dns", "connect", False)
    assert "spelling" in failure.hint


def test_dns_server_failure_is_dns_and_transient():
    failure = classify_smtp_error(socket.gaierror(socket.EAI_AGAIN, "Temporary failure"), "connect", ctx())

    assert failure.category == "dns" and failure.transient is True


def test_smtplib_read_timeout_is_timeout_not_connection_lost():
    failure = classify_smtp_error(smtplib_read_timeout(), "connect", ctx())

    assert (failure.category, failure.stage, failure.transient) == ("timeout", "connect", True)


def test_timeout_on_port_465_without_ssl_suggests_ssl():
    failure = classify_smtp_error(TimeoutError("timed out"), "connect", ctx(port=465, security="starttls"))

    assert failure.category == "timeout" and "choose ssl" in failure.hint


def test_server_hanging_up_is_connection_lost_and_transient():
    failure = classify_smtp_error(
        smtplib.SMTPServerDisconnected("Connection unexpectedly closed"), "data", ctx()
    )

    assert (failure.category, failure.transient) == ("connection_lost", True)


def test_554_greeting_is_server_unavailable():
    failure = classify_smtp_error(
        smtplib.SMTPConnectError(554, b"5.7.1 No SMTP service here"), "connect", ctx()
    )

    assert (failure.category, failure.transient, failure.smtp_code) == ("server_unavailable", False, 554)


# --- tls -------------------------------------------------------------------------------------------


def test_tls_failure_with_ssl_on_port_587_suggests_starttls():
    failure = classify_smtp_error(ssl.SSLError(1, "wrong version number"), "connect", ctx(security="ssl"))

    assert (failure.category, failure.stage) == ("tls_handshake", "tls")
    assert "starttls" in failure.hint


def test_tls_failure_with_ssl_on_port_465_points_at_the_provider_settings():
    failure = classify_smtp_error(
        ssl.SSLError(1, "handshake failure"), "connect", ctx(port=465, security="ssl")
    )

    assert failure.category == "tls_handshake" and "465 with ssl" in failure.hint


# --- envelope and data -----------------------------------------------------------------------------


def test_size_refusal_at_mail_from_is_message_too_large():
    exc = smtplib.SMTPSenderRefused(552, b"5.3.4 Message size exceeds fixed limit", "billing@acme.example")

    failure = classify_smtp_error(exc, "data", ctx())

    assert (failure.category, failure.stage, failure.transient) == ("message_too_large", "envelope", False)


def test_temporary_refusal_of_every_recipient_is_throttled_and_keeps_the_list():
    exc = smtplib.SMTPRecipientsRefused({"a@customer.example": (450, b"4.2.1 Try again later")})

    failure = classify_smtp_error(exc, "data", ctx())

    assert (failure.category, failure.transient) == ("throttled", True)
    assert list(failure.refused) == ["a@customer.example"]


def test_permanent_and_temporary_refusals_together_are_recipient_rejected():
    exc = smtplib.SMTPRecipientsRefused(
        {"a@customer.example": (550, b"5.1.1 Unknown"), "b@customer.example": (451, b"4.3.0 Later")}
    )

    failure = classify_smtp_error(exc, "data", ctx())

    assert failure.category == "recipient_rejected" and failure.transient is False


def test_policy_refusal_of_the_message_is_message_rejected():
    exc = smtplib.SMTPDataError(554, b"5.7.1 Message rejected as spam")

    failure = classify_smtp_error(exc, "data", ctx())

    assert (failure.category, failure.stage, failure.transient) == ("message_rejected", "data", False)


# --- SES -------------------------------------------------------------------------------------------


def test_ses_sandbox_wording_is_identity_not_verified():
    failure = classify_ses_error(
        "MessageRejected",
        "Email address is not verified. The following identities failed the check in region "
        "US-EAST-1: billing@acme.example",
        "billing@acme.example",
    )

    assert (failure.category, failure.transient) == ("ses_identity_not_verified", False)
    assert "billing@acme.example" in failure.hint and "sandbox" in failure.hint


@pytest.mark.parametrize(
    ("code", "category", "transient"),
    [
        ("MailFromDomainNotVerifiedException", "ses_identity_not_verified", False),
        ("SendingPausedException", "ses_sending_paused", False),
        ("AccountSuspendedException", "ses_sending_paused", False),
        ("TooManyRequestsException", "throttled", True),
        ("LimitExceededException", "throttled", True),
        ("ThrottlingException", "throttled", True),
        ("NotFoundException", "ses_configuration", False),
        ("MessageRejected", "ses_message_rejected", False),
        ("InternalServiceUnavailable", "ses_error", True),
        ("SomethingNew", "ses_error", False),
    ],
)
def test_ses_error_codes_map_to_categories(code, category, transient):
    failure = classify_ses_error(code, "details", "billing@acme.example")

    assert (failure.category, failure.transient) == (category, transient)
    assert failure.server_message == f"{code}: details"


# --- the tables ------------------------------------------------------------------------------------


def untrusted_certificate() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "certificate verify failed")
    exc.verify_message = "self-signed certificate"
    return exc


SENDER = "billing@acme.example"

# One error per row of SMTP_RULES, in table order: each must land on its own row.
ONE_ERROR_PER_SMTP_RULE = [
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure"), "connect", ctx()),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "connect", ctx()),
    (untrusted_certificate(), "connect", ctx()),
    (ssl.SSLError(1, "wrong version number"), "connect", ctx(security="ssl")),
    (ssl.SSLError(1, "handshake failure"), "connect", ctx(port=465, security="ssl")),
    (TimeoutError("timed out"), "connect", ctx(port=465)),
    (TimeoutError("timed out"), "data", ctx()),
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connect", ctx()),
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"), "data", ctx()),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), "connect", ctx()),
    (OSError(errno.ECONNABORTED, "Software caused connection abort"), "connect", ctx()),
    (smtplib.SMTPConnectError(-1, b"SSH-2.0-OpenSSH_9.2p1 Debian-2"), "connect", ctx()),
    (BAD_LOGIN, "auth", ctx()),
    (smtplib.SMTPDataError(552, b"Too much mail data"), "data", ctx()),
    (smtplib.SMTPSenderRefused(550, b"5.3.4 Message too big for system", SENDER), "data", ctx()),
    (smtplib.SMTPDataError(554, b"Message size exceeds the limit"), "data", ctx()),
    (smtplib.SMTPConnectError(421, b"4.3.2 Service not available"), "connect", ctx()),
    (smtplib.SMTPSenderRefused(454, b"4.7.0 Too many messages, slow down", SENDER), "data", ctx()),
    (smtplib.SMTPSenderRefused(553, b"5.7.1 Sender not allowed", SENDER), "data", ctx()),
    (smtplib.SMTPRecipientsRefused({"a@customer.example": (550, b"5.1.1 Unknown user")}), "data", ctx()),
    (smtplib.SMTPDataError(554, b"5.7.1 Message rejected as spam"), "data", ctx()),
    (smtplib.SMTPConnectError(554, b"5.7.1 No SMTP service here"), "connect", ctx()),
    (smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server."), "auth", ctx()),
    (smtplib.SMTPException("No suitable authentication method found."), "auth", ctx()),
    (smtplib.SMTPHeloError(501, b"5.5.4 Syntax error"), "connect", ctx()),
    (UnicodeEncodeError("ascii", "pässword", 1, 2, "no"), "auth", ctx()),
    (ValueError("unexpected"), "data", ctx()),
]


def test_every_smtp_rule_is_reached_by_an_error_no_earlier_rule_takes():
    reached = []
    for exc, stage, context in ONE_ERROR_PER_SMTP_RULE:
        rule, facts = rule_for(exc, stage, context)
        assert rule.failure(facts).category == rule.category
        reached.append(rule)

    assert reached == list(SMTP_RULES)


def test_no_two_smtp_rules_have_the_same_condition():
    def condition(rule: Rule) -> tuple:
        return (rule.types, rule.unless, rule.errnos, rule.codes, rule.status, rule.pattern, rule.when)

    assert len({condition(rule) for rule in SMTP_RULES}) == len(SMTP_RULES)


ONE_ERROR_PER_SES_RULE = [
    ("MessageRejected", "Email address is not verified."),
    ("MessageRejected", "Message contains a virus"),
    ("MailFromDomainNotVerifiedException", "details"),
    ("AccessDeniedException", "details"),
    ("SendingPausedException", "details"),
    ("ThrottlingException", "details"),
    ("NotFoundException", "details"),
    ("InternalServiceUnavailable", "details"),
    ("SomethingNew", "details"),
]


def test_every_ses_rule_is_reached_and_none_is_written_twice():
    assert [ses_rule_for(code, message) for code, message in ONE_ERROR_PER_SES_RULE] == list(SES_RULES)
    assert len({(rule.code, rule.message) for rule in SES_RULES}) == len(SES_RULES)


def test_every_category_is_produced_and_every_hint_has_a_text():
    produced = (
        {rule.category for rule in SMTP_RULES}
        | {rule.category for rule in SES_RULES}
        | {starttls_unavailable(ctx()).category, insecure_auth_refused(ctx()).category}
    )

    assert produced == set(Category)
    assert set(HINTS) == set(Hint)


@pytest.mark.parametrize(
    "reply",
    [
        b"5.7.30 Basic authentication is not supported for Client Submission",
        b"5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant",
        b"5.7.3 Authentication unsuccessful",
    ],
)
def test_microsoft_basic_auth_refusals_name_the_oauth_connection(reply):
    context = ServerContext("smtp.office365.com", 587, "starttls", username="b@acme.example")

    failure = classify_smtp_error(smtplib.SMTPAuthenticationError(535, reply), "auth", context)

    assert failure.category == "auth_failed" and "/oauth/microsoft/start" in failure.hint
