"""Amazon SES transport: sesv2 SendEmail with the raw MIME message, same interface as SMTP."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from mailer.dal import clients
from mailer.delivery.classify import classify_ses_error
from mailer.delivery.failures import DeliveryFailed, Failure
from mailer.delivery.message import OutgoingMessage
from mailer.delivery.transports.base import Delivery, TransportBase


class SesTransport(TransportBase):
    def __init__(self, *, region: str | None = None, configuration_set: str | None = None) -> None:
        self.region = region
        self.configuration_set = configuration_set

    def open(self) -> None:
        """SES needs no session; the client is shared per container."""

    def close(self) -> None:
        pass

    def send(self, message: OutgoingMessage) -> Delivery:
        request = {
            "FromEmailAddress": message.envelope_from,
            "Destination": {"ToAddresses": list(message.recipients)},
            "Content": {"Raw": {"Data": message.as_bytes()}},
        }
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        try:
            response = clients.client("sesv2", self.region).send_email(**request)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise DeliveryFailed(
                classify_ses_error(error.get("Code", ""), error.get("Message", ""), message.envelope_from)
            ) from None
        except BotoCoreError as exc:
            raise DeliveryFailed(
                Failure(
                    stage="connect",
                    category="connection_failed",
                    transient=True,
                    server_message=str(exc)[:500],
                    hint="Amazon SES could not be reached; the send will be retried.",
                )
            ) from None
        # SES replaces the Message-ID header with its own; the log keeps the id SES answers with.
        return Delivery(message_id=f"<{response['MessageId']}@email.amazonses.com>")
