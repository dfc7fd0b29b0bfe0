"""The short message a company's notification address gets when automated email could not be sent."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mailer.delivery.failures import Failure
from mailer.delivery.message import OutgoingMessage, Sender, build_message
from mailer.settings.models import SettingsView

if TYPE_CHECKING:
    from mailer.automations.kinds import Recipient


def failure_notice(
    company: SettingsView, label: str, about: str, recipient: Recipient, failure: Failure
) -> OutgoingMessage:
    """Which email failed (`about`: "work order WO-1001"), why (with the server's own words), and how
    to fix it."""
    assert company.notify_email
    said = (
        f" - the server said: {failure.smtp_code or ''} {failure.server_message}"
        if failure.server_message
        else ""
    )
    text = (
        f"The automated {label} email for {about} "
        f"({recipient.name}, {recipient.email}) was not sent.\n\n"
        f"Why: {failure.category.replace('_', ' ')}{said}\n\n"
        f"How to fix it: {failure.hint}\n\n"
        "After fixing the settings, use Test account settings to check them.\n"
    )
    return build_message(
        sender=Sender(company.from_email, company.from_name, None),
        to=[company.notify_email],
        subject=f"Not sent: {label} email for {about}",
        text=text,
        automated=True,
    )


def unknown_notice(
    company: SettingsView, label: str, work_order_number: str, customer: str | None
) -> OutgoingMessage:
    """An automated email whose sending stopped before its outcome was recorded: it may have reached
    the customer, it will not be sent again, and a person decides whether to send it by hand."""
    assert company.notify_email
    about = f" ({customer})" if customer else ""
    text = (
        f"The automated {label} email for work order {work_order_number}{about} may have been sent: "
        "the sending stopped before its outcome was recorded.\n\n"
        "It will not be sent again automatically, so the customer never gets it twice.\n\n"
        "What to do: check with the customer whether it arrived before sending it by hand. "
        "The sent log lists it with the status unknown.\n"
    )
    return build_message(
        sender=Sender(company.from_email, company.from_name, None),
        to=[company.notify_email],
        subject=f"Check with the customer: {label} email for work order {work_order_number}",
        text=text,
        automated=True,
    )
