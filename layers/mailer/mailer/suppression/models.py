"""Suppressed addresses as the API shows them, and how addresses are compared.

Two spellings of one address are the same entry when they differ only in the case of the domain
(`Dana@Example.COM` and `Dana@example.com`). The local part is compared as written: RFC 5321 leaves
its case to the receiving server, and some servers do tell `Dana` from `dana`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Reason = Literal["bounce", "complaint", "manual"]


def normalized(address: str) -> str:
    """The address as the list keeps and compares it: the local part as written, the domain in
    lower case (IDNA domains as written in Unicode, lowered)."""
    local, at, domain = address.strip().rpartition("@")
    return f"{local}@{domain.lower()}" if at else address.strip()


class Suppression(BaseModel):
    email: str
    reason: Reason
    created_at: str
    email_id: str | None = None  # the sent-log entry that bounced or was complained about


class SuppressionList(BaseModel):
    items: list[Suppression]


class SuppressionInput(BaseModel):
    """Body of PUT /suppressions/{email}: an administrator's own entry is always `manual`."""

    model_config = ConfigDict(extra="forbid")

    reason: Literal["manual"] = "manual"
