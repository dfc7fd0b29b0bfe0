"""Turn what smtplib, ssl, sockets and SES raise into a category, a stage and a fix-it hint."""

from __future__ import annotations

import errno
import smtplib
import socket
import ssl
from dataclasses import dataclass

from mailer.delivery.failures import Failure
from mailer.delivery.providers import GENERIC_AUTH_HINT, provider_for_host

TRANSIENT_CODES = {421, 450, 451, 452}


@dataclass(frozen=True)
class ServerContext:
    """What the hints may mention about the connection that failed."""

    host: str
    port: int
    security: str
    username: str | None = None
    from_email: str | None = None


def _decode(raw: bytes | str | None) -> str | None:
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:500] or None


def _throttled(code: int | None, text: str) -> bool:
    lowered = text.lower()
    words = ("rate", "too many", "limit", "throttl", "try again later", "slow down", "quota")
    return (code is not None and 400 <= code < 500 and any(w in lowered for w in words)) or (
        code in (421, 450, 451, 452) and "4.7." in lowered
    )


def _too_large(code: int | None, text: str) -> bool:
    lowered = text.lower()
    return code == 552 or "5.3.4" in lowered or ("size" in lowered and "exceed" in lowered)


def classify_smtp_error(exc: BaseException, stage: str, ctx: ServerContext) -> Failure:
    """One mapping for every SMTP-side failure, so every function reports them alike."""
    where = f"{ctx.host}:{ctx.port}"
    if isinstance(exc, smtplib.SMTPServerDisconnected) and isinstance(exc.__context__, TimeoutError):
        exc = exc.__context__  # smtplib reports a timed-out read as "Connection unexpectedly closed"
    if isinstance(exc, socket.gaierror):
        transient = exc.errno in (socket.EAI_AGAIN,)
        return Failure(
            stage="connect",
            category="dns",
            transient=transient,
            server_message=str(exc),
            hint=f"The server name {ctx.host!r} could not be found. Check its spelling "
            "(for example smtp.office365.com or smtp.gmail.com).",
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc)
        return Failure(
            stage="tls",
            category="certificate",
            transient=False,
            server_message=reason,
            hint=f"The certificate of {ctx.host} could not be trusted ({reason}). Use the exact server "
            "name your provider gives (the one on its certificate); a self-signed certificate must be "
            "replaced or its CA added to MAILER_EXTRA_CA_BUNDLE by the operator.",
        )
    if isinstance(exc, ssl.SSLError):
        if ctx.security == "ssl" and ctx.port != 465:
            hint = (
                f"Port {ctx.port} does not start with TLS. Choose starttls for this port, "
                "or use port 465 with ssl."
            )
        else:
            hint = (
                f"The secure connection to {where} failed. Check that the port and security match "
                "what your provider documents (587 with starttls, or 465 with ssl)."
            )
        return Failure(
            stage="tls", category="tls_handshake", transient=False, server_message=str(exc), hint=hint
        )
    if isinstance(exc, TimeoutError | socket.timeout):
        if stage == "connect" and ctx.security != "ssl" and ctx.port == 465:
            hint = f"No answer on {where}. Port 465 expects TLS from the start: choose ssl."
        else:
            hint = (
                f"The server at {where} stopped answering during {stage}. A firewall may block "
                "the port, or the server is overloaded; try again, or use port 587."
            )
        return Failure(stage=stage, category="timeout", transient=True, hint=hint)
    if isinstance(exc, ConnectionRefusedError):
        return Failure(
            stage="connect",
            category="connection_refused",
            transient=True,
            server_message=str(exc),
            hint=f"Nothing accepts connections on {where}. Check the server name and port "
            "(587 for starttls, 465 for ssl).",
        )
    if isinstance(exc, smtplib.SMTPServerDisconnected | ConnectionResetError | BrokenPipeError):
        return Failure(
            stage=stage,
            category="connection_lost",
            transient=True,
            server_message=_decode(str(exc)),
            hint=f"The server at {where} closed the connection during {stage}. "
            "This is usually temporary; the send will be retried.",
        )
    if isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException):
        unreachable = exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL)
        return Failure(
            stage="connect",
            category="network_unreachable" if unreachable else "connection_failed",
            transient=True,
            server_message=str(exc),
            hint=f"Could not reach {where}: {exc.strerror or exc}. Check the server name and port.",
        )
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        text = _decode(exc.smtp_error) or ""
        provider = provider_for_host(ctx.host)
        hint = provider.auth_hint if provider else GENERIC_AUTH_HINT
        if "5.7.139" in text or "smtpclientauthentication" in text.lower():
            hint = provider.auth_hint if provider else hint
        return Failure(
            stage="auth",
            category="auth_failed",
            transient=False,
            smtp_code=exc.smtp_code,
            server_message=text,
            hint=f"The server refused to sign in as {ctx.username!r}. {hint}",
        )
    if isinstance(exc, smtplib.SMTPSenderRefused):
        text = _decode(exc.smtp_error) or ""
        if _too_large(exc.smtp_code, text):
            return _too_large_failure("envelope", exc.smtp_code, text)
        if exc.smtp_code in TRANSIENT_CODES or _throttled(exc.smtp_code, text):
            return _throttled_failure("envelope", exc.smtp_code, text)
        return Failure(
            stage="envelope",
            category="sender_rejected",
            transient=False,
            smtp_code=exc.smtp_code,
            server_message=text,
            hint=f"The server will not send as {ctx.from_email}. Use the account's own address as From, "
            "or give the account permission to send as this address (Send As in Microsoft 365, "
            "'Send mail as' alias in Gmail, a verified sender with relay providers).",
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = {addr: f"{code} {_decode(msg)}" for addr, (code, msg) in exc.recipients.items()}
        codes = [code for code, _ in exc.recipients.values()]
        first_text = _decode(next(iter(exc.recipients.values()))[1]) if exc.recipients else ""
        if codes and all(c in TRANSIENT_CODES for c in codes):
            failure = _throttled_failure("envelope", codes[0], first_text or "")
            return Failure(**{**failure.__dict__, "refused": refused})
        return Failure(
            stage="envelope",
            category="recipient_rejected",
            transient=False,
            smtp_code=codes[0] if codes else None,
            server_message=first_text,
            refused=refused,
            hint="The server refused "
            + ", ".join(sorted(refused))
            + ". Check the address for typos; if it is right, the recipient's server may be refusing "
            "mail from this account.",
        )
    if isinstance(exc, smtplib.SMTPDataError):
        text = _decode(exc.smtp_error) or ""
        if _too_large(exc.smtp_code, text):
            return _too_large_failure("data", exc.smtp_code, text)
        if exc.smtp_code in TRANSIENT_CODES or _throttled(exc.smtp_code, text):
            return _throttled_failure("data", exc.smtp_code, text)
        return Failure(
            stage="data",
            category="message_rejected",
            transient=False,
            smtp_code=exc.smtp_code,
            server_message=text,
            hint="The server refused the message itself (often a spam or policy filter). "
            "The server's answer above says why.",
        )
    if isinstance(exc, smtplib.SMTPConnectError):
        text = _decode(exc.smtp_error) or ""
        if exc.smtp_code in TRANSIENT_CODES or _throttled(exc.smtp_code, text):
            return _throttled_failure("connect", exc.smtp_code, text)
        return Failure(
            stage="connect",
            category="server_unavailable",
            transient=False,
            smtp_code=exc.smtp_code,
            server_message=text,
            hint=f"The server at {where} refused the session. Check that this is your provider's "
            "outgoing (SMTP) server.",
        )
    if isinstance(exc, smtplib.SMTPNotSupportedError) or (
        isinstance(exc, smtplib.SMTPException) and "authentication method" in str(exc)
    ):
        return Failure(
            stage="auth",
            category="auth_unsupported",
            transient=False,
            server_message=_decode(str(exc)),
            hint=f"The server at {where} offers no sign-in method we can use here. Some servers only "
            "offer sign-in after STARTTLS or on another port: check the port and security, or "
            "clear the username if this server accepts mail without signing in.",
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        text = _decode(exc.smtp_error) or ""
        if exc.smtp_code in TRANSIENT_CODES or _throttled(exc.smtp_code, text):
            return _throttled_failure(stage, exc.smtp_code, text)
        return Failure(
            stage=stage,
            category="protocol",
            transient=False,
            smtp_code=exc.smtp_code,
            server_message=text,
            hint=f"The server answered {exc.smtp_code} during {stage}: {text}",
        )
    if isinstance(exc, UnicodeError) and stage == "auth":
        return Failure(
            stage="auth",
            category="auth_failed",
            transient=False,
            hint="The username or password holds characters that SMTP sign-in cannot carry (only "
            "plain ASCII works with most servers). Use an app password, which is plain ASCII.",
        )
    return Failure(
        stage=stage,
        category="unknown",
        transient=False,
        server_message=_decode(str(exc)),
        hint=f"Sending failed during {stage}: {type(exc).__name__}. Check the settings and try again.",
    )


def _throttled_failure(stage: str, code: int | None, text: str) -> Failure:
    return Failure(
        stage=stage,
        category="throttled",
        transient=True,
        smtp_code=code,
        server_message=text,
        hint="The server asked to try later (rate or quota limit, or a temporary problem). "
        "Automated mail is retried; if it keeps happening, check the account's sending limits.",
    )


def _too_large_failure(stage: str, code: int | None, text: str) -> Failure:
    return Failure(
        stage=stage,
        category="message_too_large",
        transient=False,
        smtp_code=code,
        server_message=text,
        hint="The message is larger than this server accepts. Send smaller or fewer attachments "
        "(many servers stop near 20 to 25 MB, and attachments grow by a third when encoded).",
    )


def starttls_unavailable(ctx: ServerContext) -> Failure:
    return Failure(
        stage="tls",
        category="starttls_unavailable",
        transient=False,
        hint=f"The server at {ctx.host}:{ctx.port} does not offer STARTTLS, so the password would "
        "travel unencrypted; it was not sent. Choose port 587 with starttls or port 465 with ssl.",
    )


def insecure_auth_refused(ctx: ServerContext) -> Failure:
    return Failure(
        stage="auth",
        category="insecure_auth_refused",
        transient=False,
        hint="Security is set to none, so signing in would send the password unencrypted; it was "
        "not sent. Choose starttls or ssl, or clear the username for a server that needs no sign-in.",
    )


SES_CATEGORIES = {
    "MessageRejected": ("ses_message_rejected", False),
    "AccessDeniedException": ("ses_access_denied", False),
    "MailFromDomainNotVerifiedException": ("ses_identity_not_verified", False),
    "AccountSuspendedException": ("ses_sending_paused", False),
    "SendingPausedException": ("ses_sending_paused", False),
    "TooManyRequestsException": ("throttled", True),
    "LimitExceededException": ("throttled", True),
    "ThrottlingException": ("throttled", True),
    "NotFoundException": ("ses_configuration", False),
    "BadRequestException": ("ses_message_rejected", False),
}


def classify_ses_error(code: str, message: str, from_email: str) -> Failure:
    category, transient = SES_CATEGORIES.get(code, ("ses_error", code.endswith("ServiceUnavailable")))
    if category == "ses_message_rejected" and any(
        words in message.lower() for words in ("not verified", "did not have authority to send")
    ):
        category = "ses_identity_not_verified"
    hints = {
        "ses_identity_not_verified": f"Amazon SES has not verified {from_email} (or an address it sends "
        "to, while the account is in the SES sandbox). Verify the address or its domain in the SES "
        "console, or request production access.",
        "ses_sending_paused": "Sending is paused for this SES account or configuration set. "
        "Check the SES account dashboard for a review or suspension notice.",
        "throttled": "Amazon SES is limiting the sending rate of this account. Automated mail is "
        "retried; raise the sending quota in the SES console if it keeps happening.",
        "ses_configuration": "The SES configuration set named in the settings does not exist in "
        "this region. Clear it or create it.",
        "ses_message_rejected": f"Amazon SES refused the message: {message}",
        "ses_access_denied": "This function may not send through Amazon SES here: the operator must "
        "allow ses:SendEmail and ses:SendRawEmail for the sending identity.",
    }
    return Failure(
        stage="data" if category != "ses_sending_paused" else "connect",
        category=category,
        transient=transient,
        server_message=f"{code}: {message}"[:500],
        hint=hints.get(category, f"Amazon SES refused the send ({code}): {message}"),
    )


def every_visible_recipient_refused(refused: dict[str, str], visible: list[str]) -> Failure | None:
    """The server took the message for BCC copies only: the people it was for did not get it."""
    if not visible or not all(addr in refused for addr in visible):
        return None
    first = refused[visible[0]]
    code_text, _, text = first.partition(" ")
    return Failure(
        stage="envelope",
        category="recipient_rejected",
        transient=False,
        smtp_code=int(code_text) if code_text.isdigit() else None,
        server_message=text or first,
        refused=dict(refused),
        hint="The server refused "
        + ", ".join(visible)
        + ". Check the address for typos; only the BCC copies were accepted.",
    )
