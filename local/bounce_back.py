"""The local mail server's bounces: mail to the demo's bouncing domain is accepted, and a bounce
report (RFC 3464, shaped as Postfix writes one) goes into the sending account's mailbox on the
local IMAP server, where the bounce reader finds it, as a real remote server's would arrive."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid

from local.imap_server import ImapServer
from local.smtp_server import ReceivedMessage

BOUNCING_DOMAIN = "bounce.test"  # every address there does not exist
BOUNCING_ADDRESS = f"nobody@{BOUNCING_DOMAIN}"
REPORTING_HOST = "mail.demo.test"


def bounce_report(original: EmailMessage, recipient: str, sender: str) -> bytes:
    """A permanent failure (5.1.1) for `recipient`, naming the original by its Message-ID."""
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{REPORTING_HOST}>"
    report["To"] = sender
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = format_datetime(datetime.now(UTC))
    report["Message-ID"] = make_msgid(domain=REPORTING_HOST)
    report["Auto-Submitted"] = "auto-replied"
    report.attach(
        MIMEText(
            f"This is the mail system at host {REPORTING_HOST}.\n\n"
            "I'm sorry to have to inform you that your message could not\n"
            "be delivered to one or more recipients.\n\n"
            f"<{recipient}>: host mx.{BOUNCING_DOMAIN} said: 550 5.1.1 <{recipient}>:\n"
            "    Recipient address rejected: User unknown in virtual mailbox table\n"
        )
    )
    groups = []
    for fields in (
        {"Reporting-MTA": f"dns; {REPORTING_HOST}", "Arrival-Date": format_datetime(datetime.now(UTC))},
        {
            "Final-Recipient": f"rfc822; {recipient}",
            "Original-Recipient": f"rfc822;{recipient}",
            "Action": "failed",
            "Status": "5.1.1",
            "Remote-MTA": f"dns; mx.{BOUNCING_DOMAIN}",
            "Diagnostic-Code": f"smtp; 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown",
        },
    ):
        group = Message()
        for name, value in fields.items():
            group[name] = value
        groups.append(group)
    status = MIMEBase("message", "delivery-status")
    status.set_payload(groups)  # one field group per message, then per recipient (RFC 3464)
    report.attach(status)
    headers = MIMEText("".join(f"{k}: {v}\n" for k, v in original.items()), "rfc822-headers")
    report.attach(headers)
    return bytes(report.as_bytes())


def bounce_back(imap: ImapServer, users: dict[str, str]) -> Callable[[ReceivedMessage], None]:
    """An on_message hook: for each recipient in the bouncing domain, a report to the account the
    mail was sent with (in a thread: the SMTP server's loop must not wait for IMAP)."""

    def on_message(message: ReceivedMessage) -> None:
        account = message.auth_user
        bounced = [r for r in message.rcpt_tos if r.lower().endswith("@" + BOUNCING_DOMAIN)]
        if not bounced or account not in users:
            return
        original = message.parsed()

        def deliver() -> None:
            for recipient in bounced:
                imap.append(account, users[account], bounce_report(original, recipient, account))

        threading.Thread(target=deliver, name="bounce-back", daemon=True).start()

    return on_message


def chain(*hooks: Callable[[ReceivedMessage], None]) -> Callable[[ReceivedMessage], None]:
    def on_message(message: ReceivedMessage) -> None:
        for hook in hooks:
            hook(message)

    return on_message
