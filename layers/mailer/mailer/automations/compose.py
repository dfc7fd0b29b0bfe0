"""Composing automated email: the wording filled in with a work order, the company and its time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from mailer.automations.models import Automation, Preview
from mailer.automations.service import AutomationService
from mailer.config import MailerConfig
from mailer.dal.work_orders_table import WorkOrderStore
from mailer.delivery.html_text import html_to_text
from mailer.delivery.message import InlineImage, OutgoingMessage, Sender, build_message
from mailer.errors import NotFound
from mailer.identity import Caller
from mailer.settings.models import SettingsView
from mailer.settings.service import SettingsService
from mailer.templating.engine import render, render_subject
from mailer.templating.fields import company_values, long_date, sample_context
from mailer.work_orders.models import PHOTO_CID, PHOTO_HTML, WorkOrder, work_order_context

AUTOMATION_LABELS = {
    "reminder": "reminder",
    "confirmation": "on-the-way confirmation",
    "thank_you": "thank-you",
    "invoice_reminder": "invoice reminder",
    "statement": "statement",
    "document_event": "confirmation",
}


def label_of(automation: str) -> str:
    return AUTOMATION_LABELS.get(automation, automation.replace("_", " "))


def system_caller(tenant_id: str) -> Caller:
    """Automated email acts for the company, as an administrator of it."""
    return Caller(tenant_id=tenant_id, user_id="automation", email=None, is_admin=True)


def company_of(settings: SettingsService, tenant_id: str) -> SettingsView | None:
    try:
        return settings.get(system_caller(tenant_id), "company")
    except NotFound:
        return None


def zone_of(company: SettingsView | None, config: MailerConfig) -> ZoneInfo:
    return ZoneInfo((company.timezone if company else None) or config.default_timezone)


def render_automation(
    automation: Automation,
    company: SettingsView | None,
    work_order: WorkOrder | None,
    config: MailerConfig,
    *,
    photo: bool = False,
) -> Preview:
    """Fill an automation's wording; fields a work order lacks keep their sample values in previews."""
    zone = zone_of(company, config)
    context = sample_context("automation")
    if work_order is not None:
        context |= work_order_context(work_order, zone, photo=photo)
    if company is not None:
        context["company"] = company_values(company)
    context["today"] = long_date(datetime.now(zone).date())
    html = render(automation.body_html, context, html=True)
    if photo and PHOTO_CID not in html:
        html += f"<p>{PHOTO_HTML}</p>"
    text = render(automation.body_text, context, html=False) if automation.body_text else html_to_text(html)
    return Preview(subject=render_subject(automation.subject, context), html=html, text=text)


def compose(
    automation: Automation,
    settings: SettingsView,
    work_order: WorkOrder,
    parent: WorkOrder | None,
    config: MailerConfig,
    photo: InlineImage | None,
) -> OutgoingMessage:
    """The automated message to the customer (the parent's contact for a multi-day work order)."""
    rendered = render_automation(automation, settings, work_order, config, photo=photo is not None)
    contact = (parent or work_order).customer
    assert contact.email
    return build_message(
        sender=Sender(settings.from_email, settings.from_name, settings.reply_to),
        to=[contact.email],
        bcc=[settings.bcc] if settings.bcc else [],
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        inline_images=[photo] if photo else [],
        automated=True,
    )


@dataclass
class Composer:
    """Previews of automated email, as the settings screens show them."""

    config: MailerConfig
    settings: SettingsService
    automations: AutomationService
    work_orders: WorkOrderStore

    def preview(self, caller: Caller, automation_type: str, work_order_id: str | None) -> Preview:
        """The saved (or default) wording with this work order, or with sample data."""
        work_order = None
        if work_order_id:
            work_order = self.work_orders.get(caller.tenant_id, work_order_id)
            if work_order is None:
                raise NotFound(f"No work order {work_order_id}.")
        automation = self.automations.get(caller.tenant_id, automation_type)
        return render_automation(
            automation, company_of(self.settings, caller.tenant_id), work_order, self.config
        )
