"""The outbox: automated emails waiting on SQS for the worker."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from mailer.automations.models import AutomationType


class OutboxMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant_id: str
    automation: AutomationType
    work_order_id: str
    occurrence: str  # the reminder's start date, or the status change's transition (status:en_route:v7)

    @property
    def ledger_key(self) -> tuple[str, str, str, str]:
        return self.tenant_id, self.automation, self.work_order_id, self.occurrence
