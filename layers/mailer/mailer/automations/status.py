"""Status changes of work orders, and the automated email a change queues (en route, completed)."""

from __future__ import annotations

from dataclasses import dataclass

from mailer.automations.compose import AUTOMATION_LABELS
from mailer.automations.models import AutomationType
from mailer.automations.outbox import OutboxMessage
from mailer.automations.service import AutomationService
from mailer.dal.outbox_queue import OutboxQueue
from mailer.dal.work_orders_table import WorkOrderStore
from mailer.errors import NotFound, ServiceUnavailable
from mailer.identity import Caller
from mailer.ids import new_id, utc_now
from mailer.work_orders.models import (
    EmailDecision,
    StatusChange,
    StatusChangeResult,
    WorkOrder,
    WorkOrderInput,
    why_no_email,
)

STATUS_AUTOMATION: dict[str, AutomationType] = {"en_route": "confirmation", "completed": "thank_you"}


@dataclass
class WorkOrderSync:
    """Work orders as the business application syncs them."""

    work_orders: WorkOrderStore

    def save(self, caller: Caller, work_order_id: str, body: WorkOrderInput) -> WorkOrder:
        work_order = WorkOrder.model_validate(
            body.model_dump() | {"id": work_order_id, "updated_at": utc_now()}
        )
        self.work_orders.put(caller.tenant_id, work_order)
        return work_order

    def get(self, caller: Caller, work_order_id: str) -> WorkOrder:
        work_order = self.work_orders.get(caller.tenant_id, work_order_id)
        if work_order is None:
            raise NotFound(f"No work order {work_order_id}.")
        return work_order


@dataclass
class StatusChanges:
    automations: AutomationService
    work_orders: WorkOrderStore
    outbox: OutboxQueue

    def change(self, caller: Caller, work_order_id: str, change: StatusChange) -> StatusChangeResult:
        work_order = self.work_orders.get(caller.tenant_id, work_order_id)
        if work_order is None:
            raise NotFound(f"No work order {work_order_id}.")
        previous = work_order
        work_order = work_order.model_copy(update={"status": change.status, "updated_at": utc_now()})
        self.work_orders.put(caller.tenant_id, work_order)
        try:
            email = self._email(caller.tenant_id, work_order, change, previous.status)
        except ServiceUnavailable:
            # The caller is told to retry; the retry must find the old status, or it queues nothing.
            self.work_orders.put(caller.tenant_id, previous)
            raise
        return StatusChangeResult(work_order=work_order, email=email)

    def _email(
        self, tenant_id: str, work_order: WorkOrder, change: StatusChange, previous: str
    ) -> EmailDecision:
        automation_type = STATUS_AUTOMATION.get(change.status)
        reason = self._why_not(tenant_id, work_order, change, previous, automation_type)
        if reason or automation_type is None:
            return EmailDecision(queued=False, reason=reason)
        message = OutboxMessage(
            tenant_id=tenant_id, automation=automation_type, work_order_id=work_order.id, occurrence=new_id()
        )
        self.outbox.send_one(message)
        return EmailDecision(queued=True, automation=automation_type)

    def _why_not(
        self,
        tenant_id: str,
        work_order: WorkOrder,
        change: StatusChange,
        previous: str,
        automation_type: str | None,
    ) -> str | None:
        if automation_type is None:
            return f"no automated email is sent for status {change.status}"
        if previous == change.status:
            return f"the work order was already {change.status}"
        if not change.notify:
            return "notify was false: the technician chose not to send it"
        if not self.automations.get(tenant_id, automation_type).active:
            return f"the {AUTOMATION_LABELS[automation_type]} email is inactive"
        parent = self.work_orders.get(tenant_id, work_order.parent_id) if work_order.parent_id else None
        return why_no_email(work_order, parent)
