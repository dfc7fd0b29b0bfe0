"""Bounce reports in the shapes real servers send, and mail that only looks a little like them.

Built with the email package, following the documented formats: RFC 3464 (delivery status
notifications), RFC 6522 (multipart/report), Postfix's bounce(8) notices, Exchange Online's
non-delivery reports (NDRs), Gmail's "Delivery Status Notification (Failure)", and RFC 8098
read receipts (MDNs). Every builder takes the original Message-ID (with its angle brackets, as it
was sent) and the recipient, and returns the raw bytes with CRLF line ends, as IMAP APPEND wants.

Addresses and hosts are reserved example names; nothing here is looked up or connected to.
"""

from __future__ import annotations

from email.message import Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import compat32

SENDER = "billing@acme.example.com"
CRLF = compat32.clone(linesep="\r\n", max_line_length=0)  # headers folded as written here


def original_message(message_id: str, recipient: str, *, subject: str = "Invoice 1001") -> Message:
    """The mail the company sent, as a server returns it."""
    message = MIMEText("Please find invoice 1001 attached.\n", "plain", "utf-8")
    message["From"] = f"Acme Billing <{SENDER}>"
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = "Tue, 01 Dec 2026 09:00:00 +0000"
    message["Message-ID"] = message_id
    return message


def _headers_text(message: Message) -> str:
    return "".join(f"{name}: {value}\n" for name, value in message.items())


def _status(*groups: dict[str, str]) -> MIMEBase:
    """A message/delivery-status part: per-message fields first, then one group per recipient."""
    part = MIMEBase("message", "delivery-status")
    del part["MIME-Version"]
    blocks: list[Message | str] = []
    for fields in groups:
        block = Message()
        for name, value in fields.items():
            block[name] = value
        blocks.append(block)
    part.set_payload(blocks)
    return part


def _report(headers: dict[str, str], parts: list[Message], *, report_type: str = "delivery-status") -> bytes:
    report = MIMEMultipart("report", report_type=report_type)
    for name, value in headers.items():
        report[name] = value
    report.preamble = "This is a MIME-encapsulated message."
    for part in parts:
        report.attach(part)
    return report.as_bytes(policy=CRLF)


def _text(body: str, subtype: str = "plain", description: str | None = None) -> MIMEText:
    part = MIMEText(body, subtype, "us-ascii")
    del part["MIME-Version"]
    if description:
        part["Content-Description"] = description
    return part


def _returned_headers(message_id: str, recipient: str) -> MIMEText:
    part = _text(_headers_text(original_message(message_id, recipient)), "rfc822-headers")
    part["Content-Description"] = "Undelivered Message Headers"
    return part


def _returned_message(message_id: str, recipient: str) -> MIMEMessage:
    part = MIMEMessage(original_message(message_id, recipient))
    del part["MIME-Version"]
    return part


# --- Postfix (bounce(8)) ----------------------------------------------------------------------------

POSTFIX_HOST = "mail.acme.example.com"


def postfix_bounce(message_id: str, recipient: str) -> bytes:
    """Postfix's "Undelivered Mail Returned to Sender": notice, status, the returned headers."""
    notice = (
        f"This is the mail system at host {POSTFIX_HOST}.\n\n"
        "I'm sorry to have to inform you that your message could not\n"
        "be delivered to one or more recipients. It's attached below.\n\n"
        "For further assistance, please send mail to postmaster.\n\n"
        "If you do so, please include this problem report. You can\n"
        "delete your own text from the attached returned message.\n\n"
        "                   The mail system\n\n"
        f"<{recipient}>: host mx.example.org[192.0.2.25] said: 550 5.1.1\n"
        f"    <{recipient}>: Recipient address rejected: User unknown in virtual mailbox\n"
        "    table (in reply to RCPT TO command)\n"
    )
    status = _status(
        {
            "Reporting-MTA": f"dns; {POSTFIX_HOST}",
            "X-Postfix-Queue-ID": "4QbTnH0GZzz9sWn",
            "X-Postfix-Sender": f"rfc822; {SENDER}",
            "Arrival-Date": "Tue,  1 Dec 2026 09:00:01 +0000 (UTC)",
        },
        {
            "Final-Recipient": f"rfc822; {recipient}",
            "Original-Recipient": f"rfc822;{recipient}",
            "Action": "failed",
            "Status": "5.1.1",
            "Remote-MTA": "dns; mx.example.org",
            "Diagnostic-Code": f"smtp; 550 5.1.1 <{recipient}>: Recipient address rejected:\n"
            "    User unknown in virtual mailbox table",
        },
    )
    status["Content-Description"] = "Delivery report"
    headers = {
        "From": f"MAILER-DAEMON@{POSTFIX_HOST} (Mail Delivery System)",
        "Subject": "Undelivered Mail Returned to Sender",
        "To": SENDER,
        "Auto-Submitted": "auto-replied",
        "Date": "Tue,  1 Dec 2026 09:00:02 +0000 (UTC)",
        "Message-Id": f"<20261201090002.4QbTnH0GZzz9sWn@{POSTFIX_HOST}>",
    }
    return _report(
        headers,
        [_text(notice, description="Notification"), status, _returned_headers(message_id, recipient)],
    )


def postfix_delayed(message_id: str, recipient: str) -> bytes:
    """Postfix's "Delayed Mail (still being retried)": Action delayed, a 4.x.x status."""
    notice = (
        f"This is the mail system at host {POSTFIX_HOST}.\n\n"
        "####################################################################\n"
        "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\n"
        "####################################################################\n\n"
        "Your message could not be delivered for more than 4 hour(s).\n"
        "It will be retried until it is 5 day(s) old.\n"
    )
    status = _status(
        {
            "Reporting-MTA": f"dns; {POSTFIX_HOST}",
            "X-Postfix-Queue-ID": "4QbTnH0GZzz9sWp",
            "X-Postfix-Sender": f"rfc822; {SENDER}",
            "Arrival-Date": "Tue,  1 Dec 2026 09:00:01 +0000 (UTC)",
        },
        {
            "Final-Recipient": f"rfc822; {recipient}",
            "Action": "delayed",
            "Status": "4.4.7",
            "Diagnostic-Code": "X-Postfix; delivery temporarily suspended: connect to\n"
            "    mx.example.org[192.0.2.25]:25: Connection timed out",
            "Will-Retry-Until": "Sun,  6 Dec 2026 09:00:01 +0000 (UTC)",
        },
    )
    headers = {
        "From": f"MAILER-DAEMON@{POSTFIX_HOST} (Mail Delivery System)",
        "Subject": "Delayed Mail (still being retried)",
        "To": SENDER,
        "Auto-Submitted": "auto-replied",
    }
    return _report(
        headers,
        [_text(notice, description="Notification"), status, _returned_headers(message_id, recipient)],
    )


def two_recipients(message_id: str, failed: str, delivered: str) -> bytes:
    """A Postfix report for two recipients of one message: one refused, one delivered (NOTIFY=SUCCESS)."""
    status = _status(
        {"Reporting-MTA": f"dns; {POSTFIX_HOST}", "X-Postfix-Queue-ID": "4QbTnH0GZzz9sWq"},
        {
            "Final-Recipient": f"rfc822; {failed}",
            "Action": "failed",
            "Status": "5.1.1",
            "Remote-MTA": "dns; mx.example.org",
            "Diagnostic-Code": "smtp; 550 5.1.1 User unknown",
        },
        {
            "Final-Recipient": f"rfc822; {delivered}",
            "Original-Recipient": f"rfc822; {delivered}",
            "Action": "delivered",
            "Status": "2.0.0",
            "Remote-MTA": "dns; mx.example.net",
            "Diagnostic-Code": "smtp; 250 2.0.0 Ok: queued as 4QbTp0",
        },
    )
    headers = {
        "From": f"MAILER-DAEMON@{POSTFIX_HOST} (Mail Delivery System)",
        "Subject": "Undelivered Mail Returned to Sender",
        "To": SENDER,
    }
    notice = _text(f"This is the mail system at host {POSTFIX_HOST}.\n", description="Notification")
    return _report(headers, [notice, status, _returned_headers(message_id, failed)])


# --- Exchange Online ---------------------------------------------------------------------------------

EXCHANGE_MTA = "AM0PR01MB1234.eurprd01.prod.outlook.com"


def exchange_online_ndr(message_id: str, recipient: str, *, returned: str = "message") -> bytes:
    """Exchange Online's NDR ("Undeliverable: ..."): an HTML and a text notice, the status, and the
    original as message/rfc822 (returned="message") or its headers only (returned="headers")."""
    plain = (
        "Your message to " + recipient + " couldn't be delivered.\n"
        f"{recipient.split('@')[0]} wasn't found at {recipient.split('@')[1]}.\n\n"
        "Action Required\nUnknown To address\n\n"
        "Remote server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; "
        "Recipient not found by SMTP address lookup'\n"
    )
    html = (
        '<html><body><div style="font-family:Segoe UI">'
        f"<p>Your message to {recipient} couldn't be delivered.</p>"
        "<p><b>Action Required</b>: Unknown To address</p>"
        "<p>Diagnostic information for administrators: Remote server returned "
        "'550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'</p>"
        "</div></body></html>"
    )
    notice = MIMEMultipart("alternative", differences="Content-Type")
    del notice["MIME-Version"]
    notice.attach(_text(plain))
    notice.attach(_text(html, "html"))
    status = _status(
        {
            "Reporting-MTA": f"dns;{EXCHANGE_MTA}",
            "Received-From-MTA": f"dns;{EXCHANGE_MTA}",
            "Arrival-Date": "Tue, 1 Dec 2026 09:00:01 +0000",
        },
        {
            "Original-Recipient": f"rfc822;{recipient}",
            "Final-Recipient": f"rfc822;{recipient}",
            "Action": "failed",
            "Status": "5.1.10",
            "Diagnostic-Code": "smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
            "address lookup",
        },
    )
    original = (
        _returned_message(message_id, recipient)
        if returned == "message"
        else _returned_headers(message_id, recipient)
    )
    headers = {
        "From": "Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@acme.example.com>",
        "To": f"<{SENDER}>",
        "Subject": "Undeliverable: Invoice 1001",
        "Thread-Topic": "Invoice 1001",
        "Auto-Submitted": "auto-replied",
        "X-MS-Exchange-Message-Is-Ndr": "",
        "Content-Language": "en-US",
    }
    return _report(headers, [notice, status, original])


# --- Gmail -----------------------------------------------------------------------------------------


def gmail_bounce(message_id: str, recipient: str) -> bytes:
    """Gmail's "Delivery Status Notification (Failure)", with the whole original returned."""
    plain = (
        "** Address not found **\n\n"
        f"Your message wasn't delivered to {recipient} because the address couldn't be found, "
        "or is unable to receive mail.\n\nLearn more here: https://support.google.com/mail/?p=NoSuchUser\n"
    )
    notice = MIMEMultipart("alternative")
    del notice["MIME-Version"]
    notice.attach(_text(plain))
    notice.attach(_text(f"<html><body><p>Address not found: {recipient}</p></body></html>", "html"))
    status = _status(
        {
            "Reporting-MTA": "dns; googlemail.com",
            "Received-From-MTA": f"dns; {SENDER}",
            "Arrival-Date": "Tue, 01 Dec 2026 01:00:01 -0800 (PST)",
            "X-Original-Message-ID": message_id,
        },
        {
            "Final-Recipient": f"rfc822; {recipient}",
            "Action": "failed",
            "Status": "5.1.1",
            "Remote-MTA": "dns; mx.example.org. (192.0.2.25, the server for the domain example.org.)",
            "Diagnostic-Code": "smtp; 550-5.1.1 The email account that you tried to reach does not exist. "
            "Please try\n 550-5.1.1 double-checking the recipient's email address for typos or\n"
            " 550-5.1.1 unnecessary spaces. For more information, go to\n"
            " 550 5.1.1  https://support.google.com/mail/?p=NoSuchUser a1si123 - gsmtp",
            "Last-Attempt-Date": "Tue, 01 Dec 2026 01:00:02 -0800 (PST)",
        },
    )
    headers = {
        "From": "Mail Delivery Subsystem <mailer-daemon@googlemail.com>",
        "To": SENDER,
        "Subject": "Delivery Status Notification (Failure)",
        "Auto-Submitted": "auto-replied",
        "References": message_id,
        "In-Reply-To": message_id,
        "Message-ID": "<6568a1b2.050a0220.1b2c3.abcdSMTPIN_ADDED_MISSING@mx.google.com>",
    }
    return _report(headers, [notice, status, _returned_message(message_id, recipient)])


# --- mail that is not a delivery status notification -------------------------------------------------


def plain_reply(message_id: str, recipient: str) -> bytes:
    """A person answering the mail."""
    reply = MIMEText("Thanks, paid today.\n\n> Please find invoice 1001 attached.\n", "plain", "utf-8")
    reply["From"] = recipient
    reply["To"] = SENDER
    reply["Subject"] = "Re: Invoice 1001"
    reply["In-Reply-To"] = message_id
    reply["References"] = message_id
    reply["Message-ID"] = "<reply-1@example.org>"
    return reply.as_bytes(policy=CRLF)


def out_of_office(message_id: str, recipient: str) -> bytes:
    """An automatic reply (RFC 3834): auto-replied, but no report."""
    reply = MIMEText("I am out of the office until 7 December, with no access to email.\n", "plain", "utf-8")
    reply["From"] = recipient
    reply["To"] = SENDER
    reply["Subject"] = "Automatic reply: Invoice 1001"
    reply["Auto-Submitted"] = "auto-replied"
    reply["X-Auto-Response-Suppress"] = "All"
    reply["In-Reply-To"] = message_id
    reply["Message-ID"] = "<ooo-1@example.org>"
    return reply.as_bytes(policy=CRLF)


def read_receipt(message_id: str, recipient: str) -> bytes:
    """A read receipt (RFC 8098 MDN): a multipart/report too, of report-type disposition-notification,
    with a Final-Recipient and the original's headers, so only the report type tells it apart."""
    notification = MIMEBase("message", "disposition-notification")
    del notification["MIME-Version"]
    notification.set_payload(
        "Reporting-UA: mail.example.org; Webmail\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Original-Message-ID: {message_id}\r\n"
        "Disposition: manual-action/MDN-sent-manually; displayed\r\n"
    )
    headers = {"From": recipient, "To": SENDER, "Subject": "Read: Invoice 1001"}
    parts: list[Message] = [
        _text(f"The message sent to {recipient} was displayed.\n"),
        notification,
        _returned_headers(message_id, recipient),
    ]
    return _report(headers, parts, report_type="disposition-notification")


BOUNCES = ("postfix_bounce", "exchange_online_ndr", "gmail_bounce")
NOT_REPORTS = ("plain_reply", "out_of_office", "read_receipt")
