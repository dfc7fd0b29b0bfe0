"""Presets for the mail providers small businesses use, with the advice each one needs."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

GOOGLE_AUTH_HINT = (
    "Google accounts with 2-Step Verification need an app password: create one at "
    "myaccount.google.com/apppasswords and paste it here instead of your normal password. "
    "Workspace admins can also allow the smtp-relay.gmail.com service instead. Or connect the "
    "Google account, which needs no password: POST /oauth/google/start."
)
MICROSOFT_AUTH_HINT = (
    "Connect the Microsoft 365 account instead of using a password (POST /oauth/microsoft/start): "
    "Microsoft turns password sign-in for SMTP (basic authentication) off by default at the end of "
    "December 2026, and answers 5.7.30 or 5.7.139 when it is off. To keep a password meanwhile: in "
    "the Microsoft 365 admin center open the user, Mail > Manage email apps, and tick Authenticated "
    "SMTP; security defaults also block it, and multi-factor accounts need an app password."
)
YAHOO_AUTH_HINT = (
    "Yahoo requires an app password: Account Security > Generate app password, then use it here."
)
ZOHO_AUTH_HINT = (
    "Zoho accounts with two-factor authentication need an application-specific password "
    "(Zoho Accounts > Security > App Passwords)."
)
SES_AUTH_HINT = (
    "Amazon SES SMTP needs SMTP credentials made in the SES console (SMTP settings > Create SMTP "
    "credentials), not your AWS access keys or console password, and they are tied to one region."
)
GENERIC_AUTH_HINT = (
    "Check the username (usually the full email address) and the password. If the account uses "
    "two-step verification, create an app password at your provider and use it here instead of "
    "your normal password."
)


@dataclass(frozen=True)
class SendingLimits:
    """A sending account's budget: messages a minute, recipients a day, connections open at once.
    None is no limit of ours (the provider may still refuse, as a transient failure)."""

    per_minute: int | None = None
    per_day: int | None = None
    connections: int | None = None


NO_LIMITS = SendingLimits()
# Exchange Online, per mailbox: 30 messages a minute and 10,000 recipients a day ("Sending limits",
# learn.microsoft.com/office365/servicedescriptions/exchange-online-service-description/
# exchange-online-limits);
# SMTP AUTH client submission takes 3 concurrent connections per mailbox, the 4th gets
# "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"
# (learn.microsoft.com/exchange/troubleshoot/send-emails/smtp-submission-limits).
MICROSOFT_365_LIMITS = SendingLimits(per_minute=30, per_day=10_000, connections=3)
# Microsoft Graph sends from the same Exchange Online mailbox (the same 30 a minute and 10,000 a day),
# and Outlook service limits allow 4 concurrent requests per app and mailbox
# (learn.microsoft.com/graph/throttling-limits#outlook-service-limits).
MICROSOFT_GRAPH_LIMITS = SendingLimits(per_minute=30, per_day=10_000, connections=4)
# Google Workspace: 2,000 messages a day per user ("Gmail sending limits in Google Workspace",
# support.google.com/a/answer/166852); counted here as recipients, which is stricter. Google
# publishes no per-minute or connection figure for Gmail SMTP.
GOOGLE_WORKSPACE_LIMITS = SendingLimits(per_day=2_000)
# Gmail API: 15,000 quota units per user a minute and messages.send costs 100, so 150 a minute
# (developers.google.com/gmail/api/reference/quota), besides the 2,000 a day above.
GMAIL_API_LIMITS = SendingLimits(per_minute=150, per_day=2_000)
# Workspace SMTP relay: 10,000 recipients a day per user ("SMTP relay service sending limits",
# support.google.com/a/answer/2956491).
GOOGLE_RELAY_LIMITS = SendingLimits(per_day=10_000)


@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    host: str
    port: int
    security: str
    hint: str
    auth_hint: str = GENERIC_AUTH_HINT
    limits: SendingLimits = NO_LIMITS
    # The domain the From domain's SPF record includes for this provider's servers; None when the
    # provider documents none for the From domain (see the presets below).
    spf_include: str | None = None
    # Where the same account's mailbox is read over IMAP for bounce reports (IMAPS, TLS from the
    # first byte); None for sending-only services, whose bounces come another way.
    imap_host: str | None = None
    imap_port: int = 993

    def public(self) -> dict[str, Any]:
        data = asdict(self)
        del data["auth_hint"]
        return data


SES_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-central-1",
    "ap-southeast-2",
)

_PROVIDERS: tuple[Provider, ...] = (
    Provider(
        "office365",
        "Microsoft 365 / Office 365",
        "smtp.office365.com",
        587,
        "starttls",
        "Sign in with the full mailbox address. SMTP AUTH must be enabled for the mailbox; "
        "to send as a shared mailbox the user needs Send As permission on it.",
        MICROSOFT_AUTH_HINT,
        MICROSOFT_365_LIMITS,
        # "v=spf1 include:spf.protection.outlook.com -all" (learn.microsoft.com/defender-office-365/
        # email-authentication-spf-configure).
        spf_include="spf.protection.outlook.com",
    ),
    Provider(
        "outlook",
        "Outlook.com / Hotmail",
        "smtp-mail.outlook.com",
        587,
        "starttls",
        "Personal Microsoft accounts with two-step verification need an app password.",
        MICROSOFT_AUTH_HINT,
    ),
    Provider(
        "gmail",
        "Gmail / Google Workspace",
        "smtp.gmail.com",
        587,
        "starttls",
        "Use an app password (myaccount.google.com/apppasswords); your normal password is refused.",
        GOOGLE_AUTH_HINT,
        GOOGLE_WORKSPACE_LIMITS,
        # "v=spf1 include:_spf.google.com ~all" (support.google.com/a/answer/10685031).
        spf_include="_spf.google.com",
    ),
    Provider(
        "gmail_relay",
        "Google Workspace SMTP relay",
        "smtp-relay.gmail.com",
        587,
        "starttls",
        "A Workspace admin must add an SMTP relay rule (Admin console > Apps > Google Workspace > "
        "Gmail > Routing > SMTP relay service) allowing SMTP authentication.",
        GOOGLE_AUTH_HINT,
        GOOGLE_RELAY_LIMITS,
        spf_include="_spf.google.com",  # the relay sends from Google's servers, as above
    ),
    *(
        Provider(
            f"ses_smtp_{region.replace('-', '_')}",
            f"Amazon SES SMTP ({region})",
            f"email-smtp.{region}.amazonaws.com",
            587,
            "starttls",
            "Use SES SMTP credentials for this region, and a verified From address or domain. "
            "New SES accounts are in the sandbox and can only send to verified recipients.",
            SES_AUTH_HINT,
            # "include:amazonses.com" (docs.aws.amazon.com/ses/latest/dg/send-email-authentication-spf.html).
            spf_include="amazonses.com",
        )
        for region in SES_REGIONS
    ),
    Provider(
        "smtp2go",
        "SMTP2GO",
        "mail.smtp2go.com",
        587,
        "starttls",
        "Use an SMTP user made under Sending > SMTP Users, and a verified sender domain. "
        "Port 2525 works where 587 is blocked.",
    ),
    Provider(
        "yahoo",
        "Yahoo Mail",
        "smtp.mail.yahoo.com",
        465,
        "ssl",
        "Yahoo requires an app password for mail programs.",
        YAHOO_AUTH_HINT,
    ),
    Provider(
        "zoho",
        "Zoho Mail",
        "smtp.zoho.com",
        465,
        "ssl",
        "Accounts hosted in the EU or India use smtp.zoho.eu or smtp.zoho.in instead.",
        ZOHO_AUTH_HINT,
        # "v=spf1 include:zoho.com ~all" for the data center smtp.zoho.com serves
        # (zoho.com/mail/help/adminconsole/spf-configuration.html).
        spf_include="zoho.com",
    ),
    Provider(
        "icloud",
        "iCloud Mail",
        "smtp.mail.me.com",
        587,
        "starttls",
        "Use an app-specific password from account.apple.com.",
        # "v=spf1 include:icloud.com ~all", from iCloud's custom email domain setup
        # (support.apple.com/en-us/102374).
        spf_include="icloud.com",
    ),
    Provider(
        "fastmail",
        "Fastmail",
        "smtp.fastmail.com",
        465,
        "ssl",
        "Create an app password under Settings > Privacy & Security > Integrations.",
        # "v=spf1 include:spf.messagingengine.com ?all" (fastmail.help/hc/en-us/articles/360060591153).
        spf_include="spf.messagingengine.com",
    ),
    Provider(
        "sendgrid",
        "Twilio SendGrid",
        "smtp.sendgrid.net",
        587,
        "starttls",
        "The username is the word apikey; the password is an API key with Mail Send permission.",
    ),
    Provider(
        "mailgun",
        "Mailgun",
        "smtp.mailgun.org",
        587,
        "starttls",
        "Use the SMTP credentials of your sending domain (Sending > Domain settings > SMTP credentials).",
    ),
)

# The IMAP servers of the presets with a mailbox, from each provider's own IMAP settings page:
# Microsoft (support.microsoft.com, "POP, IMAP, and SMTP settings for Outlook.com"), Google
# (support.google.com/mail/answer/7126229), Yahoo (help.yahoo.com, "IMAP server settings"), Zoho
# (zoho.com/mail/help/imap-access.html), iCloud (support.apple.com/en-us/102525), Fastmail
# (fastmail.help, "Server names and ports").
IMAP_SERVERS = {
    "office365": "outlook.office365.com",
    "outlook": "outlook.office365.com",
    "gmail": "imap.gmail.com",
    "yahoo": "imap.mail.yahoo.com",
    "zoho": "imap.zoho.com",
    "icloud": "imap.mail.me.com",
    "fastmail": "imap.fastmail.com",
}
PROVIDERS: dict[str, Provider] = {
    p.id: replace(p, imap_host=IMAP_SERVERS[p.id]) if p.id in IMAP_SERVERS else p for p in _PROVIDERS
}


def provider_for_host(host: str | None) -> Provider | None:
    """The preset whose server this is, so advice applies even when no preset was chosen."""
    if not host:
        return None
    host = host.lower().rstrip(".")
    for provider in _PROVIDERS:
        if provider.host == host:
            return provider
    if host.endswith((".office365.com", ".outlook.com")):
        return PROVIDERS["office365"]
    if host.endswith(".gmail.com") or host.endswith(".google.com"):
        return PROVIDERS["gmail"]
    if host.startswith("email-smtp.") and host.endswith(".amazonaws.com"):
        return PROVIDERS["ses_smtp_us_east_1"]
    return None
