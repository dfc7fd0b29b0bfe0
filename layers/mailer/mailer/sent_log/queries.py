"""What support asks of the sent log: one document's mail, one work order's, everything, one entry."""

from __future__ import annotations

from dataclasses import dataclass

from mailer.dal.sent_log_table import SentLogStore
from mailer.errors import InvalidInput, NotFound
from mailer.identity import Caller
from mailer.sent_log.models import EmailPage, SentLogEntry


@dataclass
class SentLogQueries:
    sent_log: SentLogStore

    def list(
        self,
        caller: Caller,
        document_type: str | None,
        document_number: str | None,
        work_order_id: str | None,
        *,
        delivery_status: str | None = None,
        status: str | None = None,
        limit: int,
        cursor: str | None,
    ) -> EmailPage:
        """The sent log of one document, one work order, one delivery status, or the whole company,
        newest first."""
        if (document_type is None) != (document_number is None):
            missing = "document_number" if document_type else "document_type"
            raise InvalidInput.on(missing, "document_type and document_number go together")
        document = (document_type, document_number) if document_type and document_number else None
        for name, value in (("delivery_status", delivery_status), ("status", status)):
            if value and (document or work_order_id):
                raise InvalidInput.on(
                    name,
                    "lists the whole sent log by status; a document's or work order's listing shows "
                    "each entry's status already",
                )
        items, next_cursor = self.sent_log.list(
            caller.tenant_id,
            document=document,
            work_order_id=work_order_id,
            delivery_status=delivery_status,
            status=status,
            limit=limit,
            cursor=cursor,
        )
        return EmailPage(items=items, next_cursor=next_cursor)

    def get(self, caller: Caller, email_id: str) -> SentLogEntry:
        entry = self.sent_log.get(caller.tenant_id, email_id)
        if entry is None:
            raise NotFound(f"No email {email_id} in the sent log.")
        return entry
