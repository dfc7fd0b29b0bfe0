"""Invoices as the business application syncs them, read back with the reminders already sent."""

from __future__ import annotations

from dataclasses import dataclass

from mailer.billing.models import Invoice, InvoiceInput, InvoiceList, InvoiceStatus, InvoiceView
from mailer.billing.rules import INVOICE_REMINDER
from mailer.dal.invoices_table import InvoiceStore
from mailer.dal.ledger_table import LedgerStore
from mailer.errors import NotFound
from mailer.identity import Caller
from mailer.ids import utc_now


@dataclass
class InvoiceSync:
    invoices: InvoiceStore
    ledger: LedgerStore

    def save(self, caller: Caller, invoice_id: str, body: InvoiceInput) -> InvoiceView:
        invoice = Invoice.model_validate(body.model_dump() | {"id": invoice_id, "updated_at": utc_now()})
        return self._view(caller, self.invoices.put(caller.tenant_id, invoice))

    def get(self, caller: Caller, invoice_id: str) -> InvoiceView:
        invoice = self.invoices.get(caller.tenant_id, invoice_id)
        if invoice is None:
            raise NotFound(f"No invoice {invoice_id}.")
        return self._view(caller, invoice)

    def for_customer(self, caller: Caller, customer_id: str, status: InvoiceStatus | None) -> InvoiceList:
        """The caller's company's invoices of this customer; none (not a 404) for a customer it does
        not know, so the answer tells nothing of other companies' customers."""
        return InvoiceList(items=self.invoices.for_customer(caller.tenant_id, customer_id, status))

    def _view(self, caller: Caller, invoice: Invoice) -> InvoiceView:
        sent = self.ledger.count_sent(caller.tenant_id, INVOICE_REMINDER, invoice.id)
        return InvoiceView.model_validate(invoice.model_dump() | {"reminders_sent": sent})
