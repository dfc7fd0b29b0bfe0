"""Per-company wording of document email, one template per document type, defaults until saved."""

from __future__ import annotations

from collections.abc import Callable

from mailer.dal import keys
from mailer.dal.settings_table import SettingsStore
from mailer.documents.models import DOCUMENT_TYPES, DocumentTemplate, DocumentTemplateInput, default_template
from mailer.errors import Forbidden, InvalidInput
from mailer.identity import Caller
from mailer.templating.engine import check_template

PREFIX = keys.DOCUMENT_TEMPLATE_PREFIX


class DocumentTemplateService:
    def __init__(self, store: SettingsStore, clock: Callable[[], str]) -> None:
        self.store = store
        self.clock = clock

    def get(self, tenant_id: str, document_type: str) -> DocumentTemplate:
        item = self.store.get(tenant_id, PREFIX + document_type)
        if item is None:
            return default_template(document_type)
        return DocumentTemplate.model_validate(item | {"type": document_type, "is_default": False})

    def list(self, tenant_id: str) -> list[DocumentTemplate]:
        saved = self.store.list_prefix(tenant_id, PREFIX)
        return [
            DocumentTemplate.model_validate(saved[t] | {"type": t, "is_default": False})
            if t in saved
            else default_template(t)
            for t in DOCUMENT_TYPES
        ]

    def save(self, caller: Caller, document_type: str, body: DocumentTemplateInput) -> DocumentTemplate:
        if not caller.is_admin:
            raise Forbidden("Only an administrator can change the company's document email wording.")
        if body.type is not None and body.type != document_type:
            raise InvalidInput.on("type", f"does not match the path ({document_type})")
        check_template(body.subject, "subject", "document")
        check_template(body.body_html, "body_html", "document")
        item = {
            "subject": body.subject,
            "body_html": body.body_html,
            "updated_at": self.clock(),
            "updated_by": caller.email or caller.user_id,
        }
        self.store.put(caller.tenant_id, PREFIX + document_type, item)
        return DocumentTemplate.model_validate(item | {"type": document_type, "is_default": False})

    def reset(self, caller: Caller, document_type: str) -> DocumentTemplate:
        if not caller.is_admin:
            raise Forbidden("Only an administrator can change the company's document email wording.")
        self.store.delete(caller.tenant_id, PREFIX + document_type)
        return default_template(document_type)
