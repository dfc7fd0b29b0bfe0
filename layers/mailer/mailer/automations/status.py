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
from mailer.ids import utc_now
from mailer.work_orders.models import (
    EmailDecision,
    StatusChange,
    StatusChangeResult,
    WorkOrder,
    WorkOrderInput,
    why_no_email,
)

STATUS_AUTOMATION: dict[str, AutomationType] = {"en_route": "confirmation", "completed": "thank_you"}


def transition(work_order: WorkOrder) -> str:
    """The ledger occurrence of the email a status change queues: the status and the version the
    change wrote (`status:en_route:v7`). A repeated message of one transition is the same send;
    a later transition to the same status (a new version) is a new one."""
    return f"status:{work_order.status}:v{work_order.version}"


@dataclass
class WorkOrderSync:
    """Work orders as the business application syncs them."""

    work_orders: WorkOrderStore

    def save(self, caller: Caller, work_order_id: str, body: WorkOrderInput) -> WorkOrder:
        work_order = WorkOrder.model_validate(
            body.model_dump() | {"id": work_order_id, "updated_at": utc_now()}
        )
        return self.work_orders.put(caller.tenant_id, work_order)

    def get(self, caller: Caller, work_order_id: str) -> WorkOrder:
        work_order = self.work_orders.get(caller.tenant_id, work_order_id)
        if work_order is None:
            raise NotFound(f"No work order {work_order_id}.")
        return work_order


WRITE_ATTEMPTS = 2  # the first write, and one more after another status was written meanwhile


@dataclass
class StatusChanges:
    """A status change is a conditional write on the version it read, so that of requests racing for
    the same change exactly one writes it and queues its email. The others read the work order
    again and answer from what they find. The email's ledger occurrence names the transition
    (status and the version written), so however often its message is queued or delivered, the
    worker sends it once."""

    automations: AutomationService
    work_orders: WorkOrderStore
    outbox: OutboxQueue

    def change(self, caller: Caller, work_order_id: str, change: StatusChange) -> StatusChangeResult:
        tenant_id = caller.tenant_id
        for _ in range(WRITE_ATTEMPTS):
            previous = self._read(tenant_id, work_order_id)
            if previous.status == change.status:
                return self._unchanged(tenant_id, previous, change)
            changed = previous.model_copy(update={"status": change.status, "updated_at": utc_now()})
            written = self.work_orders.put(tenant_id, changed, expected_version=previous.version)
            if written is not None:
                return StatusChangeResult(
                    work_order=written, email=self._queue(tenant_id, written, previous, change)
                )
        current = self._read(tenant_id, work_order_id)
        if current.status == change.status:
            return self._unchanged(tenant_id, current, change)
        raise ServiceUnavailable(
            f"Work order {work_order_id} is being changed by other requests; try again shortly."
        )

    def _read(self, tenant_id: str, work_order_id: str) -> WorkOrder:
        work_order = self.work_orders.get(tenant_id, work_order_id)
        if work_order is None:
            raise NotFound(f"No work order {work_order_id}.")
        return work_order

    def _unchanged(self, tenant_id: str, work_order: WorkOrder, change: StatusChange) -> StatusChangeResult:
        """The work order already has the status asked for: nothing is written, nothing queued."""
        automation_type = STATUS_AUTOMATION.get(change.status)
        reason = self._why_not(tenant_id, work_order, change, work_order.status, automation_type)
        return StatusChangeResult(work_order=work_order, email=EmailDecision(queued=False, reason=reason))

    def _queue(
        self, tenant_id: str, written: WorkOrder, previous: WorkOrder, change: StatusChange
    ) -> EmailDecision:
        try:
            return self._email(tenant_id, written, change, previous.status)
        except ServiceUnavailable:
            # The caller is told to retry; the retry must find the old status, or it queues nothing.
            # Put back only our own write: a later one (another request's) stays.
            self.work_orders.put(tenant_id, previous, expected_version=written.version)
            raise

    def _email(
        self, tenant_id: str, work_order: WorkOrder, change: StatusChange, previous: str
    ) -> EmailDecision:
        automation_type = STATUS_AUTOMATION.get(change.status)
        reason = self._why_not(tenant_id, work_order, change, previous, automation_type)
        if reason or automation_type is None:
            return EmailDecision(queued=False, reason=reason)
        message = OutboxMessage(
            tenant_id=tenant_id,
            automation=automation_type,
            record_id=work_order.id,
            occurrence=transition(work_order),
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
