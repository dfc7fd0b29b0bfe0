"""SesTransport on moto's SES (sesv2 SendEmail with raw content), and botocore's Stubber for the
errors moto cannot produce (paused sending, throttling): SES has no server of ours to misbehave."""

from __future__ import annotations

import email
from email import policy

import pytest
from botocore.stub import Stubber
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ses.models import ses_backends

from mailer.dal import clients as aws_clients
from mailer.delivery.failures import DeliveryFailed
from mailer.delivery.message import OutgoingMessage, Sender, build_message
from mailer.delivery.transports.ses import SesTransport

FROM = "billing@acme.example"


def message(**options) -> OutgoingMessage:
    options.setdefault("to", ["alice@customer.example"])
    return build_message(
        sender=Sender(FROM, "Acme Plumbing & Heating"),
        subject="Invoice 1042",
        text="Please find invoice 1042 attached.",
        **options,
    )


def sent_by_moto() -> list:
    return ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages


@pytest.fixture
def verified(aws):
    aws.client("sesv2").create_email_identity(EmailIdentity=FROM)
    return aws


@pytest.fixture
def sesv2_stub(aws):
    # The very client SesTransport uses: it asks for client("sesv2", region) with region None,
    # and functools.cache keys client("sesv2") and client("sesv2", None) apart.
    with Stubber(aws_clients.client("sesv2", None)) as stub:
        yield stub


def test_send_from_verified_address_is_accepted_and_recorded(verified):
    delivery = SesTransport().send(message())

    [recorded] = sent_by_moto()
    assert delivery.message_id == f"<{recorded.id}@email.amazonses.com>"
    assert recorded.source == FROM
    assert "alice@customer.example" in recorded.destinations
    headers = email.message_from_string(recorded.raw_data, policy=policy.default)
    assert headers["Subject"] == "Invoice 1042"
    assert headers["From"] == "Acme Plumbing & Heating <billing@acme.example>"
    quota = verified.client("ses").get_send_quota()
    assert quota["SentLast24Hours"] >= 1


def test_send_from_address_of_verified_domain_is_accepted(aws):
    aws.client("sesv2").create_email_identity(EmailIdentity="acme.example")

    delivery = SesTransport().send(message())

    assert delivery.message_id.endswith("@email.amazonses.com>")
    assert [m.source for m in sent_by_moto()] == [FROM]


def test_bcc_recipient_goes_to_the_destination_but_not_into_the_headers(verified):
    SesTransport().send(message(bcc=["archive@acme.example"]))

    [recorded] = sent_by_moto()
    assert "archive@acme.example" in recorded.destinations
    headers = email.message_from_string(recorded.raw_data, policy=policy.default)
    assert "Bcc" not in headers
    assert "archive@acme.example" not in recorded.raw_data


def test_unverified_from_is_ses_identity_not_verified_and_not_transient(aws):
    with pytest.raises(DeliveryFailed) as info:
        SesTransport().send(message())

    failure = info.value.failure
    assert failure.category == "ses_identity_not_verified"
    assert failure.transient is False
    assert FROM in failure.hint and "Verify" in failure.hint
    assert sent_by_moto() == []


@pytest.mark.parametrize("code", ["SendingPausedException", "AccountSuspendedException"])
def test_paused_account_is_ses_sending_paused_and_not_transient(sesv2_stub, code):
    sesv2_stub.add_client_error(
        "send_email", service_error_code=code, service_message="Sending is paused", http_status_code=400
    )

    with pytest.raises(DeliveryFailed) as info:
        SesTransport().send(message())

    failure = info.value.failure
    assert failure.category == "ses_sending_paused" and failure.transient is False
    assert code in (failure.server_message or "")
    assert "dashboard" in failure.hint
    sesv2_stub.assert_no_pending_responses()


def test_too_many_requests_is_throttled_and_transient(sesv2_stub):
    sesv2_stub.add_client_error(
        "send_email",
        service_error_code="TooManyRequestsException",
        service_message="Maximum sending rate exceeded.",
        http_status_code=429,
    )

    with pytest.raises(DeliveryFailed) as info:
        SesTransport().send(message())

    failure = info.value.failure
    assert failure.category == "throttled" and failure.transient is True
    assert "quota" in failure.hint
    sesv2_stub.assert_no_pending_responses()
