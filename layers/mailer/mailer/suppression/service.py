"""Reading and changing a company's suppression list, and the check every send path makes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from mailer.dal.suppressions_table import SuppressionStore
from mailer.errors import FieldError, Forbidden, InvalidInput, NotFound
from mailer.identity import Caller
from mailer.suppression.models import Reason, Suppression, normalized

REASON_WORDS = {"bounce": "a hard bounce", "complaint": "a spam complaint", "manual": "an administrator"}


def why(entry: Suppression) -> str:
    """'suppressed since 2026-12-01 (a hard bounce)'"""
    return f"is on the suppression list since {entry.created_at[:10]} ({REASON_WORDS[entry.reason]})"


@dataclass
class Suppressions:
    store: SuppressionStore
    clock: Callable[[], str]

    def list(self, caller: Caller) -> list[Suppression]:
        return sorted(self.store.list(caller.tenant_id), key=lambda e: e.created_at, reverse=True)

    def add(self, tenant_id: str, address: str, reason: Reason, email_id: str | None = None) -> Suppression:
        entry = Suppression(
            email=normalized(address), reason=reason, created_at=self.clock(), email_id=email_id
        )
        self.store.put(tenant_id, entry)
        return entry

    def add_manual(self, caller: Caller, address: str) -> Suppression:
        self._admin(caller)
        return self.add(caller.tenant_id, address, "manual")

    def remove(self, caller: Caller, address: str) -> None:
        self._admin(caller)
        if not self.store.delete(caller.tenant_id, address):
            raise NotFound(f"{normalized(address)} is not on the suppression list.")

    def suppressed(self, tenant_id: str, addresses: Iterable[str]) -> dict[str, Suppression]:
        """Those of the addresses on the company's list, by normalized address."""
        found = self.store.find((tenant_id, a) for a in addresses)
        return {address: entry for (_, address), entry in found.items()}

    def check(self, tenant_id: str, fields: Sequence[tuple[str, Sequence[str]]]) -> None:
        """A 422 naming each field (`to`, `cc`, `bcc`, `customer.email`) that holds a suppressed
        address, with the reason and the date; nothing is sent."""
        addresses = [a for _, values in fields for a in values]
        found = self.suppressed(tenant_id, addresses)
        errors = [
            FieldError(name, f"{address} {why(found[normalized(address)])}")
            for name, values in fields
            for address in values
            if normalized(address) in found
        ]
        if errors:
            raise InvalidInput(
                "A recipient is on the suppression list: nothing was sent. "
                "An administrator can remove the address with DELETE /suppressions/{email}.",
                errors=errors,
            )

    @staticmethod
    def _admin(caller: Caller) -> None:
        if not caller.is_admin:
            raise Forbidden("Only an administrator can change the suppression list.")
