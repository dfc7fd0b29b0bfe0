"""Reading and saving a company's invoice reminder rules: the three defaults exist before any save,
a saved rule replaces its default, and deleting a default puts the default back."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mailer.billing.rules import (
    DEFAULT_RULE_IDS,
    DEFAULT_RULES,
    MAX_RULES,
    ReminderRule,
    ReminderRuleInput,
    default_rule,
)
from mailer.dal import keys
from mailer.dal.settings_table import SettingsStore
from mailer.errors import Conflict, Forbidden, InvalidInput, NotFound
from mailer.identity import Caller
from mailer.templating.engine import check_template

PREFIX = keys.INVOICE_RULE_PREFIX


def _rule(rule_id: str, item: dict[str, Any]) -> ReminderRule:
    return ReminderRule.model_validate(item | {"rule_id": rule_id})


class InvoiceRuleService:
    def __init__(self, store: SettingsStore, clock: Callable[[], str]) -> None:
        self.store = store
        self.clock = clock

    def list(self, tenant_id: str) -> list[ReminderRule]:
        """The defaults first (saved or not), in their order, then the company's own rules by id."""
        saved = self.store.list_prefix(tenant_id, PREFIX)
        defaults = [_rule(r, saved[r]) if r in saved else default_rule(r) for r in DEFAULT_RULE_IDS]
        own = [_rule(r, saved[r]) for r in sorted(saved) if r not in DEFAULT_RULES]
        return defaults + own

    def get(self, tenant_id: str, rule_id: str) -> ReminderRule:
        item = self.store.get(tenant_id, PREFIX + rule_id)
        if item is not None:
            return _rule(rule_id, item)
        if rule_id in DEFAULT_RULES:
            return default_rule(rule_id)
        raise NotFound(f"No invoice reminder rule {rule_id}.")

    def save(self, caller: Caller, rule_id: str, body: ReminderRuleInput) -> ReminderRule:
        self._admin(caller)
        if body.rule_id is not None and body.rule_id != rule_id:
            raise InvalidInput.on("rule_id", f"does not match the path ({rule_id})")
        check_template(body.subject, "subject", "invoice")
        check_template(body.body_html, "body_html", "invoice")
        if body.body_text is not None:
            check_template(body.body_text, "body_text", "invoice")
        if rule_id not in DEFAULT_RULES:
            saved = self.store.list_prefix(caller.tenant_id, PREFIX)
            if rule_id not in saved and len(set(DEFAULT_RULE_IDS) | set(saved)) >= MAX_RULES:
                raise Conflict(
                    f"A company has at most {MAX_RULES} invoice reminder rules, the three defaults "
                    "included; change or delete one instead."
                )
        item = body.model_dump(exclude={"rule_id", "is_default", "updated_at", "updated_by"}) | {
            "is_default": False,
            "updated_at": self.clock(),
            "updated_by": caller.email or caller.user_id,
        }
        stored = dict(item)
        if body.active:
            # One entry per active rule: the daily run finds the companies to remind with one Query.
            stored |= {"gsi1pk": keys.ACTIVE_INVOICE_RULE_INDEX_PK, "gsi1sk": caller.tenant_id}
        self.store.put(caller.tenant_id, PREFIX + rule_id, stored)
        return _rule(rule_id, item)

    def delete(self, caller: Caller, rule_id: str) -> ReminderRule | None:
        """The default again for a default rule; None when the company's own rule is gone."""
        self._admin(caller)
        deleted = self.store.delete(caller.tenant_id, PREFIX + rule_id)
        if rule_id in DEFAULT_RULES:
            return default_rule(rule_id)
        if not deleted:
            raise NotFound(f"No invoice reminder rule {rule_id}.")
        return None

    @staticmethod
    def _admin(caller: Caller) -> None:
        if not caller.is_admin:
            raise Forbidden("Only an administrator can change invoice reminders.")
