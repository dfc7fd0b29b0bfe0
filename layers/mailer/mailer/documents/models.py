"""Document email: what a request may hold, the default wording per document type, merge values."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal, cast, get_args
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from mailer.errors import InvalidInput
from mailer.settings.models import EmailAddress, HeaderText, SettingsView
from mailer.templating.fields import company_values, long_date

DocumentType = Literal[
    "invoice", "estimate", "sales_order", "purchase_order", "statement", "receipt", "packing_slip"
]
DOCUMENT_TYPES: tuple[str, ...] = get_args(DocumentType)
LABELS = {
    "invoice": "Invoice",
    "estimate": "Estimate",
    "sales_order": "Sales order",
    "purchase_order": "Purchase order",
    "statement": "Statement",
    "receipt": "Receipt",
    "packing_slip": "Packing slip",
}
MAX_RECIPIENTS = 50
CURRENCY_SYMBOLS = {"USD": "$", "CAD": "$", "AUD": "$", "NZD": "$", "EUR": "€", "GBP": "£"}

UploadId = Annotated[str, Field(pattern=r"^[0-9A-Z]{26}$")]


class DocumentRef(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    type: DocumentType
    number: Annotated[HeaderText, Field(min_length=1, max_length=64)]
    customer_name: Annotated[HeaderText, Field(max_length=200)] | None = None
    amount: Annotated[str, Field(pattern=r"^-?\d{1,12}(\.\d{1,4})?$")] | None = None
    currency: Annotated[str, Field(pattern=r"^[A-Z]{3}$")] | None = None
    due_date: date | None = None


class AttachmentRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    upload_id: UploadId


class DocumentEmailRequest(BaseModel):
    """Body of POST /documents/email. `subject` and `body_html`, when given, are the final text."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    document: DocumentRef
    to: Annotated[list[EmailAddress], Field(min_length=1, max_length=MAX_RECIPIENTS)]
    cc: Annotated[list[EmailAddress], Field(max_length=MAX_RECIPIENTS)] = []
    bcc: Annotated[list[EmailAddress], Field(max_length=MAX_RECIPIENTS)] = []
    subject: Annotated[HeaderText, Field(min_length=1, max_length=998)] | None = None
    body_html: Annotated[str, Field(min_length=1, max_length=100_000)] | None = None
    attachments: Annotated[list[AttachmentRef], Field(max_length=10)] = []
    sender: Literal["auto", "company", "me"] = "auto"
    work_order_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")] | None = None
    queue: bool = False  # true: 202 with a `queued` entry; the outbox worker sends it

    def check(self) -> None:
        total = len(set(self.to) | set(self.cc) | set(self.bcc))
        if total > MAX_RECIPIENTS:
            raise InvalidInput.on("to", f"at most {MAX_RECIPIENTS} recipients in to, cc and bcc together")
        ids = [a.upload_id for a in self.attachments]
        if len(ids) != len(set(ids)):
            raise InvalidInput.on("attachments", "the same upload is attached twice")


class AttachmentVersion(BaseModel):
    """Which file an attachment of a sent email was: its S3 object version, and its ETag for when the
    bucket keeps no versions (then a changed file is refused instead of resent)."""

    model_config = ConfigDict(extra="forbid")

    version_id: str | None = None
    etag: str | None = None


MAX_BATCH = 100  # items of POST /documents/email/batch


class DocumentEmailBatch(BaseModel):
    """Body of POST /documents/email/batch: each item is checked on its own."""

    model_config = ConfigDict(extra="forbid")

    items: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=MAX_BATCH)]


def _none(value: Any) -> bool:
    return value is None


class QueuedItem(BaseModel):
    """One item's outcome: queued (its entry's id), or its own problem (type, title, status, ...)."""

    email_id: str | None = Field(default=None, exclude_if=_none)
    status: Literal["queued"] | None = Field(default=None, exclude_if=_none)
    error: dict[str, Any] | None = Field(default=None, exclude_if=_none)


class QueuedBatch(BaseModel):
    items: list[QueuedItem]


class SentDocumentRequest(DocumentEmailRequest):
    """What the sent log keeps of a document email to resend it: the request as sent (with the subject
    and body it was sent with) and the version of each attachment, in order. Never part of the API."""

    attachment_versions: Annotated[list[AttachmentVersion], Field(max_length=10)] = []
    queued_by: dict[str, Any] | None = None  # a queued email's: who queued it (user_id, email, is_admin)


class DocumentPreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    document: DocumentRef
    sender: Literal["auto", "company", "me"] = "auto"


class DocumentTemplateInput(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: DocumentType | None = None
    subject: Annotated[str, Field(min_length=1, max_length=998)]
    body_html: Annotated[str, Field(min_length=1, max_length=100_000)]
    # Read-only fields of GET, accepted and ignored so a frontend can send back what it read.
    is_default: bool | None = None
    updated_at: str | None = None
    updated_by: str | None = None


class DocumentTemplate(BaseModel):
    type: DocumentType
    subject: str
    body_html: str
    is_default: bool
    updated_at: str | None = None
    updated_by: str | None = None


_CLOSING = "<p>Thank you,<br>{{ sender.name }}<br>{{ company.name }}</p>"
_AMOUNT = "{% if document.amount %} for {{ document.amount }}{% endif %}"
_DUE = "{% if document.due_date %}, due {{ document.due_date }}{% endif %}"
_DEFAULT_BODIES = {
    "invoice": "<p>Please find attached invoice {{ document.number }}" + _AMOUNT + _DUE + ".</p>"
    "<p>If you have a question about it, simply reply to this email.</p>",
    "estimate": "<p>Please find attached estimate {{ document.number }}" + _AMOUNT + ".</p>"
    "<p>We are glad to answer any question before you decide; simply reply to this email.</p>",
    "sales_order": "<p>Thank you for your order. Order confirmation {{ document.number }} is attached"
    + _AMOUNT
    + ".</p>",
    "purchase_order": "<p>Please find attached purchase order {{ document.number }}" + _AMOUNT + ".</p>"
    "<p>Please confirm receipt and the expected delivery date.</p>",
    "statement": "<p>Please find attached your statement of account {{ document.number }}.</p>"
    "<p>If anything on it looks wrong, simply reply to this email.</p>",
    "receipt": "<p>Thank you for your payment. Receipt {{ document.number }} is attached" + _AMOUNT + ".</p>",
    "packing_slip": "<p>Please find attached the packing slip {{ document.number }} for your order.</p>",
}


def default_template(document_type: str) -> DocumentTemplate:
    greeting = "<p>Dear {{ document.customer_name or 'customer' }},</p>"
    return DocumentTemplate(
        type=cast(DocumentType, document_type),
        subject=LABELS[document_type] + " {{ document.number }} from {{ company.name }}",
        body_html=greeting + _DEFAULT_BODIES[document_type] + _CLOSING,
        is_default=True,
    )


def format_amount(amount: str | None, currency: str | None) -> str:
    if amount is None:
        return ""
    value = Decimal(amount)
    symbol = CURRENCY_SYMBOLS.get(currency or "")
    text = f"{abs(value):,.2f}"
    sign = "-" if value < 0 else ""
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{text} {currency or ''}".rstrip()


def document_context(
    document: DocumentRef, company: SettingsView | None, sender: SettingsView, now: datetime
) -> dict[str, Any]:
    zone = ZoneInfo((company.timezone if company else None) or "UTC")
    company_view = company or sender
    return {
        "document": {
            "type": LABELS[document.type],
            "number": document.number,
            "customer_name": document.customer_name or "",
            "amount": format_amount(document.amount, document.currency),
            "currency": document.currency or "",
            "due_date": long_date(document.due_date) if document.due_date else "",
        },
        "company": company_values(company_view),
        "sender": {"name": sender.from_name or sender.from_email, "email": sender.from_email},
        "today": long_date(now.astimezone(zone).date()),
    }


UploadContentType = Literal["application/pdf", "image/png", "image/jpeg", "text/csv", "text/plain"]


class UploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    filename: Annotated[HeaderText, Field(min_length=1, max_length=200)]
    content_type: UploadContentType
    size: Annotated[int, Field(ge=0)]


class UploadTicket(BaseModel):
    upload_id: str
    url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str]
    expires_at: str
    max_size: int


class Rendered(BaseModel):
    subject: str
    html: str
    text: str
