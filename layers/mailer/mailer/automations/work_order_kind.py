"""Work orders as a record kind of the engine: the reminder, the on-the-way confirmation and the
thank-you, as they have always been sent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mailer.automations.compose import compose
from mailer.automations.kinds import Job, Recipient
from mailer.automations.outbox import OutboxMessage
from mailer.automations.service import AutomationService
from mailer.config import MailerConfig
from mailer.dal.attachments_bucket import AttachmentStore
from mailer.dal.work_orders_table import WorkOrderStore
from mailer.delivery.message import InlineImage, OutgoingMessage
from mailer.identity import Caller
from mailer.settings.service import SendingProfile
from mailer.work_orders.models import PHOTO_CID, WorkOrder, reminder_start_date, why_no_email

WORK_ORDER_AUTOMATIONS = ("reminder", "confirmation", "thank_you")


@dataclass
class WorkOrderKind:
    config: MailerConfig
    automations: AutomationService
    work_orders: WorkOrderStore
    attachments: AttachmentStore | None
    noun: str = "work order"

    def wording(self, tenant_id: str, message: OutboxMessage) -> Any:
        return self.automations.get(tenant_id, message.automation)

    def wording_key(self, message: OutboxMessage) -> str:
        return message.automation

    def read(self, jobs: list[Job]) -> None:
        """The batch's work orders and their parents: one BatchGetItem, two with parents to read."""
        found = self.work_orders.get_many({(j.tenant_id, j.message.record_id) for j in jobs})
        parents = {(t, w.parent_id) for (t, _), w in found.items() if w.parent_id} - found.keys()
        if parents:
            found |= self.work_orders.get_many(parents)
        for job in jobs:
            job.record = found.get((job.tenant_id, job.message.record_id))
            if job.record is not None and job.record.parent_id:
                job.related = found.get((job.tenant_id, job.record.parent_id))

    def why_not(self, job: Job) -> str | None:
        return why_not_send(job.wording, job.message, job.record, job.related)

    def compose(self, job: Job, profile: SendingProfile) -> OutgoingMessage:
        photo = self._photo(job.message, job.record)
        return compose(job.wording, profile.settings, job.record, job.related, self.config, photo)

    def recipient(self, job: Job) -> Recipient:
        work_order: WorkOrder = job.record
        return Recipient(work_order.customer.name, work_order.customer.email)

    def to_addresses(self, job: Job) -> list[str]:
        contact = (job.related or job.record).customer  # a multi-day work order: the parent's
        return [contact.email] if contact.email else []

    def number(self, job: Job) -> str:
        return str(job.record.number)

    def entry_fields(self, job: Job) -> dict[str, Any]:
        return {"profile": "company", "work_order_id": job.record.id, "automation": job.message.automation}

    def sender_of(self, job: Job) -> Caller | None:
        return None  # the company account

    def fix_at(self, message: OutboxMessage) -> str:
        return f"/automations/{message.automation}"

    def _photo(self, message: OutboxMessage, work_order: WorkOrder) -> InlineImage | None:
        upload_id = work_order.technician.photo_upload_id if work_order.technician else None
        attachments = self.attachments
        if message.automation != "confirmation" or not upload_id or attachments is None:
            return None
        upload = attachments.find(message.tenant_id, upload_id)
        read = attachments.read(upload) if upload else None
        if read is None or not read[1].startswith("image/"):
            return None
        return InlineImage(PHOTO_CID, read[0], read[1], upload.filename if upload else None)


def why_not_send(
    automation: Any, message: OutboxMessage, work_order: WorkOrder | None, parent: WorkOrder | None
) -> str | None:
    """Why a queued work-order email must not be sent now, or None: checked again before the claim."""
    if not automation.active:
        return "automation inactive"
    if work_order is None:
        return "work order gone"
    if message.automation == "reminder" and reminder_start_date(work_order) != message.occurrence:
        return "no longer due a reminder"
    return why_no_email(work_order, parent)
