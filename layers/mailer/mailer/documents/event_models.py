"""Document events: the business events a confirmation email follows (an order allocated, a shipment
shipped, a bill paid, ...), their wording with the defaults every company has before saving any,
what a raised event may hold, and what it carries through the outbox to the worker."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from mailer.documents.models import MAX_RECIPIENTS, AttachmentRef, DocumentRef
from mailer.errors import InvalidInput
from mailer.identity import Caller
from mailer.settings.models import EmailAddress

DocumentEvent = Literal[
    "sales_order.allocated",
    "order.released",
    "shipment.shipped",
    "bill.paid",
    "goods.received",
    "invoice.created",
]
DOCUMENT_EVENTS: tuple[str, ...] = get_args(DocumentEvent)
DOCUMENT_EVENT: Final = "document_event"  # the automation's name in the send ledger and the sent log
EventSender = Literal["company", "caller"]  # caller: the raising user's own settings, else the company's
EVENT_NAME_DESCRIPTION = "The business event: " + ", ".join(DOCUMENT_EVENTS) + "; another is a 404."
Subject = Annotated[str, Field(min_length=1, max_length=998)]
Body = Annotated[str, Field(min_length=1, max_length=100_000)]


class DocumentAutomationInput(BaseModel):
    """Body of PUT /document-automations/{event}."""

    model_config = ConfigDict(extra="forbid")

    event: Annotated[str, Field(max_length=64)] | None = None
    active: bool = True
    subject: Subject
    body_html: Body
    body_text: Body | None = None
    attach_document: bool = True
    sender: EventSender = "company"
    # Read-only fields of GET, accepted and ignored so a frontend can send back what it read.
    is_default: bool | None = None
    updated_at: str | None = None
    updated_by: str | None = None


class DocumentAutomation(BaseModel):
    event: DocumentEvent
    active: bool
    subject: str
    body_html: str
    body_text: str | None = None
    attach_document: bool
    sender: EventSender = "company"
    is_default: bool = False
    updated_at: str | None = None
    updated_by: str | None = None


_GREETING = "<p>Hello{% if document.customer_name %} {{ document.customer_name }}{% endif %},</p>"
_CLOSING = "<p>Thank you,<br>{{ sender.name }}<br>{{ company.name }}</p>"
_AMOUNT = "{% if document.amount %} for {{ document.amount }}{% endif %}"
DEFAULTS: dict[str, dict[str, object]] = {
    "sales_order.allocated": {
        "subject": "Your order {{ document.number }} is being prepared",
        "body_html": "<p>Good news: everything on your order {{ document.number }} is set aside for you, "
        "and we are getting it ready.</p><p>We will email you again when it ships.</p>",
        "attach_document": False,
    },
    "order.released": {
        "subject": "Your order {{ document.number }} has been released",
        "body_html": "<p>Your order {{ document.number }} has been released for fulfillment"
        "{% if document.due_date %} and is due {{ document.due_date }}{% endif %}.</p>"
        "<p>If anything needs to change, simply reply to this email.</p>",
        "attach_document": False,
    },
    "shipment.shipped": {
        "subject": "Your order {{ document.number }} has shipped",
        "body_html": "<p>Your order {{ document.number }} is on its way. The packing slip is attached, "
        "so you can check the delivery when it arrives.</p>",
        "attach_document": True,
    },
    "bill.paid": {
        "subject": "Payment sent for {{ document.number }}",
        "body_html": "<p>We have paid {{ document.number }}" + _AMOUNT + ". Thank you for your business."
        "</p><p>If the payment does not reach you, simply reply to this email.</p>",
        "attach_document": True,
    },
    "goods.received": {
        "subject": "Goods received for {{ document.number }}",
        "body_html": "<p>We have received the goods for purchase order {{ document.number }}. "
        "Thank you for the delivery.</p>",
        "attach_document": False,
    },
    "invoice.created": {
        "subject": "Invoice {{ document.number }} from {{ company.name }}",
        "body_html": "<p>Please find attached invoice {{ document.number }}"
        + _AMOUNT
        + "{% if document.due_date %}, due {{ document.due_date }}{% endif %}.</p>"
        "<p>If you have a question about it, simply reply to this email.</p>",
        "attach_document": True,
    },
}
# The document a preview without one is filled in with, per event.
SAMPLE_DOCUMENTS: dict[str, DocumentRef] = {
    "sales_order.allocated": DocumentRef(
        type="sales_order", number="SO-1001", customer_name="Dana Whitfield"
    ),
    "order.released": DocumentRef(
        type="sales_order", number="SO-1001", customer_name="Dana Whitfield", due_date=date(2026, 12, 1)
    ),
    "shipment.shipped": DocumentRef(type="packing_slip", number="SO-1001", customer_name="Dana Whitfield"),
    "bill.paid": DocumentRef(
        type="purchase_order",
        number="BILL-2001",
        customer_name="Northside Supply",
        amount="840.00",
        currency="USD",
    ),
    "goods.received": DocumentRef(type="purchase_order", number="PO-2001", customer_name="Northside Supply"),
    "invoice.created": DocumentRef(
        type="invoice",
        number="INV-1001",
        customer_name="Dana Whitfield",
        amount="120.00",
        currency="USD",
        due_date=date(2026, 12, 1),
    ),
}


def default_document_automation(event: str) -> DocumentAutomation:
    """Inactive until a company switches it on; the greeting and closing of document email."""
    wording = DEFAULTS[event]
    return DocumentAutomation.model_validate(
        {
            "event": event,
            "active": False,
            "subject": wording["subject"],
            "body_html": _GREETING + str(wording["body_html"]) + _CLOSING,
            "attach_document": wording["attach_document"],
            "sender": "company",
            "is_default": True,
        }
    )


class DocumentEventPreviewRequest(BaseModel):
    """Body of POST /document-automations/{event}/preview: null renders the event's sample document."""

    model_config = ConfigDict(extra="forbid")

    document: DocumentRef | None = None


class DocumentEventRequest(BaseModel):
    """Body of POST /documents/events: the document as POST /documents/email names one."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    event: Annotated[str, Field(min_length=1, max_length=64, description=EVENT_NAME_DESCRIPTION)]
    document: DocumentRef
    to: Annotated[list[EmailAddress], Field(max_length=MAX_RECIPIENTS)] = []
    attachments: Annotated[list[AttachmentRef], Field(max_length=10)] = []

    def check(self) -> None:
        ids = [a.upload_id for a in self.attachments]
        if len(ids) != len(set(ids)):
            raise InvalidInput.on("attachments", "the same upload is attached twice")

    @property
    def recipients(self) -> list[str]:
        return list(dict.fromkeys(self.to))


class DocumentEventResult(BaseModel):
    queued: bool
    email_id: str | None = None  # the id of the sent-log entry the worker writes
    reason: str | None = None  # why nothing was queued


class RaisedBy(BaseModel):
    """Who raised the event: whose own settings send it when the automation's sender is `caller`."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: str
    user_id: str
    email: str | None = None
    is_admin: bool = False

    @classmethod
    def of(cls, caller: Caller) -> RaisedBy:
        return cls(
            tenant_id=caller.tenant_id, user_id=caller.user_id, email=caller.email, is_admin=caller.is_admin
        )

    def caller(self) -> Caller:
        return Caller(self.tenant_id, self.user_id, self.email, self.is_admin)


class RaisedEvent(BaseModel):
    """The outbox message's payload: what the worker needs besides the saved wording. Never a
    password or a token; a few kilobytes at most (the fields are bounded), far below SQS's limit."""

    model_config = ConfigDict(extra="forbid")

    document: DocumentRef
    to: Annotated[list[EmailAddress], Field(min_length=1, max_length=MAX_RECIPIENTS)]
    attachments: Annotated[list[AttachmentRef], Field(max_length=10)] = []  # checked when raised
    raised_by: RaisedBy
    raised_at: str
