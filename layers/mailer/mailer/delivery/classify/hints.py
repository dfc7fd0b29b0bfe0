"""Every fix-it hint a classified failure can carry, as str.format templates.

Fields the SMTP templates may use: where (host:port), host, port, stage, username, from_email, code,
message (the server's answer), refused (the refused addresses), error (the socket's own wording),
error_type and sign_in_advice (the advice of the provider preset whose server this is). The SES
templates use code, message and from_email.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from mailer.delivery.providers import GENERIC_AUTH_HINT, provider_for_host


class Hint(StrEnum):
    DNS = "dns"
    CONNECTION_REFUSED = "connection_refused"
    UNREACHABLE = "unreachable"
    TIMEOUT = "timeout"
    TIMEOUT_IMPLICIT_TLS_PORT = "timeout_implicit_tls_port"
    CONNECTION_LOST = "connection_lost"
    CERTIFICATE = "certificate"
    TLS_HANDSHAKE = "tls_handshake"
    TLS_ON_PLAIN_PORT = "tls_on_plain_port"
    STARTTLS_UNAVAILABLE = "starttls_unavailable"
    INSECURE_AUTH_REFUSED = "insecure_auth_refused"
    SERVER_UNAVAILABLE = "server_unavailable"
    AUTH_FAILED = "auth_failed"
    AUTH_NOT_ASCII = "auth_not_ascii"
    AUTH_UNSUPPORTED = "auth_unsupported"
    SENDER_REJECTED = "sender_rejected"
    RECIPIENT_REJECTED = "recipient_rejected"
    VISIBLE_RECIPIENTS_REJECTED = "visible_recipients_rejected"
    MESSAGE_TOO_LARGE = "message_too_large"
    MESSAGE_REJECTED = "message_rejected"
    THROTTLED = "throttled"
    PROTOCOL = "protocol"
    NOT_SMTP = "not_smtp"
    UNKNOWN = "unknown"
    SES_MESSAGE_REJECTED = "ses_message_rejected"
    SES_IDENTITY_NOT_VERIFIED = "ses_identity_not_verified"
    SES_ACCESS_DENIED = "ses_access_denied"
    SES_SENDING_PAUSED = "ses_sending_paused"
    SES_CONFIGURATION = "ses_configuration"
    SES_THROTTLED = "ses_throttled"
    SES_ERROR = "ses_error"


HINTS: dict[Hint, str] = {
    # --- SMTP: reaching the server -------------------------------------------------------------------
    Hint.DNS: "The server name {host!r} could not be found. Check its spelling "
    "(for example smtp.office365.com or smtp.gmail.com).",
    Hint.CONNECTION_REFUSED: "Nothing accepts connections on {where}. Check the server name and port "
    "(587 for starttls, 465 for ssl).",
    Hint.UNREACHABLE: "Could not reach {where}: {error}. Check the server name and port.",
    Hint.TIMEOUT: "The server at {where} stopped answering during {stage}. A firewall may block "
    "the port, or the server is overloaded; try again, or use port 587.",
    Hint.TIMEOUT_IMPLICIT_TLS_PORT: "No answer on {where}. Port 465 expects TLS from the start: choose ssl.",
    Hint.CONNECTION_LOST: "The server at {where} closed the connection during {stage}. "
    "This is usually temporary; the send will be retried.",
    # --- SMTP: TLS -----------------------------------------------------------------------------------
    Hint.CERTIFICATE: "The certificate of {host} could not be trusted ({message}). Use the exact server "
    "name your provider gives (the one on its certificate); a self-signed certificate must be "
    "replaced or its CA added to MAILER_EXTRA_CA_BUNDLE by the operator.",
    Hint.TLS_HANDSHAKE: "The secure connection to {where} failed. Check that the port and security match "
    "what your provider documents (587 with starttls, or 465 with ssl).",
    Hint.TLS_ON_PLAIN_PORT: "Port {port} does not start with TLS. Choose starttls for this port, "
    "or use port 465 with ssl.",
    Hint.STARTTLS_UNAVAILABLE: "The server at {where} does not offer STARTTLS, so the password would "
    "travel unencrypted; it was not sent. Choose port 587 with starttls or port 465 with ssl.",
    Hint.INSECURE_AUTH_REFUSED: "Security is set to none, so signing in would send the password "
    "unencrypted; it was not sent. Choose starttls or ssl, or clear the username for a server that "
    "needs no sign-in.",
    # --- SMTP: the dialogue --------------------------------------------------------------------------
    Hint.SERVER_UNAVAILABLE: "The server at {where} refused the session. Check that this is your "
    "provider's outgoing (SMTP) server.",
    Hint.AUTH_FAILED: "The server refused to sign in as {username!r}. {sign_in_advice}",
    Hint.AUTH_NOT_ASCII: "The username or password holds characters that SMTP sign-in cannot carry (only "
    "plain ASCII works with most servers). Use an app password, which is plain ASCII.",
    Hint.AUTH_UNSUPPORTED: "The server at {where} offers no sign-in method we can use here. Some servers "
    "only offer sign-in after STARTTLS or on another port: check the port and security, or "
    "clear the username if this server accepts mail without signing in.",
    Hint.SENDER_REJECTED: "The server will not send as {from_email}. Use the account's own address as "
    "From, or give the account permission to send as this address (Send As in Microsoft 365, "
    "'Send mail as' alias in Gmail, a verified sender with relay providers).",
    Hint.RECIPIENT_REJECTED: "The server refused {refused}. Check the address for typos; if it is right, "
    "the recipient's server may be refusing mail from this account.",
    Hint.VISIBLE_RECIPIENTS_REJECTED: "The server refused {refused}. Check the address for typos; only "
    "the BCC copies were accepted.",
    Hint.MESSAGE_TOO_LARGE: "The message is larger than this server accepts. Send smaller or fewer "
    "attachments (many servers stop near 20 to 25 MB, and attachments grow by a third when encoded).",
    Hint.MESSAGE_REJECTED: "The server refused the message itself (often a spam or policy filter). "
    "The server's answer above says why.",
    Hint.THROTTLED: "The server asked to try later (rate or quota limit, or a temporary problem). "
    "Automated mail is retried; if it keeps happening, check the account's sending limits.",
    Hint.NOT_SMTP: "What answers at {where} is not a mail server: it did not greet in SMTP. Check the "
    "server name and port of your provider's outgoing mail server.",
    Hint.PROTOCOL: "The server answered {code} during {stage}: {message}",
    Hint.UNKNOWN: "Sending failed during {stage}: {error_type}. Check the settings and try again.",
    # --- Amazon SES ----------------------------------------------------------------------------------
    Hint.SES_MESSAGE_REJECTED: "Amazon SES refused the message: {message}",
    Hint.SES_IDENTITY_NOT_VERIFIED: "Amazon SES has not verified {from_email} (or an address it sends "
    "to, while the account is in the SES sandbox). Verify the address or its domain in the SES "
    "console, or request production access.",
    Hint.SES_ACCESS_DENIED: "This function may not send through Amazon SES here: the operator must "
    "allow ses:SendEmail and ses:SendRawEmail for the sending identity.",
    Hint.SES_SENDING_PAUSED: "Sending is paused for this SES account or configuration set. "
    "Check the SES account dashboard for a review or suspension notice.",
    Hint.SES_CONFIGURATION: "The SES configuration set named in the settings does not exist in "
    "this region. Clear it or create it.",
    Hint.SES_THROTTLED: "Amazon SES is limiting the sending rate of this account. Automated mail is "
    "retried; raise the sending quota in the SES console if it keeps happening.",
    Hint.SES_ERROR: "Amazon SES refused the send ({code}): {message}",
}


def sign_in_advice(host: str | None) -> str:
    """The sign-in advice of the provider preset whose server this is (providers.py keeps it with
    the preset), else the advice that fits most providers."""
    provider = provider_for_host(host)
    return provider.auth_hint if provider else GENERIC_AUTH_HINT


def render(hint: Hint, **fields: Any) -> str:
    return HINTS[hint].format(**fields)
