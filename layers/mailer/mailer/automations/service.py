"""Reading and saving automated email settings, with defaults before any save."""

from __future__ import annotations

from collections.abc import Callable

from mailer.automations.models import (
    AUTOMATION_TYPES,
    DEFAULTS,
    Automation,
    AutomationInput,
    default_automation,
)
from mailer.dal import keys
from mailer.dal.settings_table import SettingsStore
from mailer.errors import Forbidden, InvalidInput
from mailer.identity import Caller
from mailer.templating.engine import check_template

PREFIX = keys.AUTOMATION_PREFIX


class AutomationService:
    def __init__(self, store: SettingsStore, clock: Callable[[], str]) -> None:
        self.store = store
        self.clock = clock

    def get(self, tenant_id: str, automation_type: str) -> Automation:
        item = self.store.get(tenant_id, PREFIX + automation_type)
        if item is None:
            return default_automation(automation_type)
        return Automation.model_validate(item | {"type": automation_type})

    def list(self, tenant_id: str) -> list[Automation]:
        saved = self.store.list_prefix(tenant_id, PREFIX)
        return [
            Automation.model_validate(saved[t] | {"type": t}) if t in saved else default_automation(t)
            for t in AUTOMATION_TYPES
        ]

    def save(self, caller: Caller, automation_type: str, body: AutomationInput) -> Automation:
        if not caller.is_admin:
            raise Forbidden("Only an administrator can change automated email.")
        if body.type is not None and body.type != automation_type:
            raise InvalidInput.on("type", f"does not match the path ({automation_type})")
        if automation_type != "reminder" and body.days_before is not None:
            raise InvalidInput.on("days_before", "only the reminder has days_before")
        check_template(body.subject, "subject", "automation")
        check_template(body.body_html, "body_html", "automation")
        if body.body_text is not None:
            check_template(body.body_text, "body_text", "automation")
        days = body.days_before if body.days_before is not None else DEFAULTS["reminder"]["days_before"]
        item = {
            "active": body.active,
            "subject": body.subject,
            "body_html": body.body_html,
            "body_text": body.body_text,
            "days_before": days if automation_type == "reminder" else None,
            "is_default": False,
            "updated_at": self.clock(),
            "updated_by": caller.email or caller.user_id,
        }
        stored = dict(item)
        if automation_type == "reminder" and body.active:
            stored |= {"gsi1pk": keys.ACTIVE_REMINDER_INDEX_PK, "gsi1sk": caller.tenant_id}
        self.store.put(caller.tenant_id, PREFIX + automation_type, stored)
        return Automation.model_validate(item | {"type": automation_type})
