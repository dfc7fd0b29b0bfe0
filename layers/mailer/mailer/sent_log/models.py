"""The sent log: one entry per send attempt, as the API shows it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class AttachmentInfo(BaseModel):
    filename: str
    size: int


class SentLogEntry(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str
    kind: Literal["test", "document", "automation"]
    status: Literal["sent", "failed", "queued"]
    from_: str = Field(alias="from")
    to: list[str]
    cc: list[str] = Field(default_factory=list)
    bcc: list[str] = Field(default_factory=list)
    subject: str
    profile: str | None = None
    document: dict[str, Any] | None = None
    work_order_id: str | None = None
    automation: str | None = None
    message_id: str | None = None
    attachments: list[AttachmentInfo] = Field(default_factory=list)
    refused: dict[str, str] = Field(default_factory=dict)
    error: dict[str, Any] | None = None
    attempts: int = 1
    created_at: str
    sent_at: str | None = None
    resent_from: str | None = None
