"""Every category a classified send failure can carry: the strings the API, the sent log and the logs show."""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    """Failure.category values. Members are strings, so they compare and serialise as their value."""

    # Before SMTP: name lookup, TCP, TLS.
    DNS = "dns"
    CONNECTION_REFUSED = "connection_refused"
    NETWORK_UNREACHABLE = "network_unreachable"
    CONNECTION_FAILED = "connection_failed"
    TIMEOUT = "timeout"
    CONNECTION_LOST = "connection_lost"
    CERTIFICATE = "certificate"
    TLS_HANDSHAKE = "tls_handshake"
    # Refused by the transport itself, before the password could travel in clear text.
    STARTTLS_UNAVAILABLE = "starttls_unavailable"
    INSECURE_AUTH_REFUSED = "insecure_auth_refused"
    # The SMTP dialogue.
    SERVER_UNAVAILABLE = "server_unavailable"
    AUTH_FAILED = "auth_failed"
    AUTH_UNSUPPORTED = "auth_unsupported"
    SENDER_REJECTED = "sender_rejected"
    RECIPIENT_REJECTED = "recipient_rejected"
    MESSAGE_TOO_LARGE = "message_too_large"
    MESSAGE_REJECTED = "message_rejected"
    THROTTLED = "throttled"
    PROTOCOL = "protocol"
    UNKNOWN = "unknown"
    # Amazon SES (its throttling is THROTTLED too).
    SES_MESSAGE_REJECTED = "ses_message_rejected"
    SES_IDENTITY_NOT_VERIFIED = "ses_identity_not_verified"
    SES_ACCESS_DENIED = "ses_access_denied"
    SES_SENDING_PAUSED = "ses_sending_paused"
    SES_CONFIGURATION = "ses_configuration"
    SES_ERROR = "ses_error"
