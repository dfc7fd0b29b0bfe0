"""Every key shape of every table, in one place. Each key starts with the caller's tenant.

Settings table:  pk TENANT#<tenant>, sk SETTINGS#company | SETTINGS#user/<sub> |
                 DOCTEMPLATE#<type> | AUTOMATION#<type>; sparse index gsi1pk ACTIVE#reminder.
Sent log:        pk TENANT#<tenant>, sk EMAIL#<id>; by_document gsi1pk <pk>#DOC#<type>#<number>;
                 by_work_order gsi2pk <pk>#WO#<id>.
Work orders:     pk TENANT#<tenant>, sk WO#<id>; by_reminder_date gsi1pk <pk>#START#<date>.
Ledger:          pk TENANT#<tenant>, sk <automation>#<work order>#<occurrence>.
Invoices:        pk TENANT#<tenant>, sk INV#<id>; by_due gsi1pk <pk>#OPEN, gsi1sk <due date>#<id> (open,
                 emailed customers only); by_customer gsi2pk <pk>#CUST#<customer>, gsi2sk <status>#<due>#<id>.
Invoice rules:   in the settings table, sk INVOICE_RULE#<rule id>.
"""

from __future__ import annotations

SETTINGS_PREFIX = "SETTINGS#"
DOCUMENT_TEMPLATE_PREFIX = "DOCTEMPLATE#"
AUTOMATION_PREFIX = "AUTOMATION#"
INVOICE_RULE_PREFIX = "INVOICE_RULE#"
INVOICE_PREFIX = "INV#"
EMAIL_PREFIX = "EMAIL#"
WORK_ORDER_PREFIX = "WO#"
# Sparse index of the settings table: only active reminders carry it, so the noon run finds the
# tenants to remind with one query.
ACTIVE_REMINDER_INDEX_PK = "ACTIVE#reminder"
# The same index holds one entry per active invoice reminder rule (gsi1sk: the tenant).
ACTIVE_INVOICE_RULE_INDEX_PK = "ACTIVE#invoice_reminder"


def tenant_pk(tenant_id: str) -> str:
    return f"TENANT#{tenant_id}"


def settings_sk(profile_key: str) -> str:
    return SETTINGS_PREFIX + profile_key


def email_sk(entry_id: str) -> str:
    return EMAIL_PREFIX + entry_id


def document_index_pk(tenant_id: str, document_type: object, number: object) -> str:
    return f"{tenant_pk(tenant_id)}#DOC#{document_type}#{number}"


def work_order_index_pk(tenant_id: str, work_order_id: str) -> str:
    return f"{tenant_pk(tenant_id)}#WO#{work_order_id}"


def work_order_sk(work_order_id: str) -> str:
    return WORK_ORDER_PREFIX + work_order_id


def reminder_index_pk(tenant_id: str, start_date: str) -> str:
    return f"{tenant_pk(tenant_id)}#START#{start_date}"


def ledger_sk(automation: str, record_id: str, occurrence: str) -> str:
    return f"{automation}#{record_id}#{occurrence}"


def ledger_record_prefix(automation: str, record_id: str) -> str:
    """The start of every ledger sort key of one record's sends of one automation."""
    return f"{automation}#{record_id}#"


def invoice_sk(invoice_id: str) -> str:
    return INVOICE_PREFIX + invoice_id


def invoice_due_index_pk(tenant_id: str) -> str:
    return f"{tenant_pk(tenant_id)}#OPEN"


def invoice_due_index_sk(due_date: str, invoice_id: str) -> str:
    return f"{due_date}#{invoice_id}"


def customer_index_pk(tenant_id: str, customer_id: str) -> str:
    return f"{tenant_pk(tenant_id)}#CUST#{customer_id}"


def customer_index_sk(status: str, due_date: str, invoice_id: str) -> str:
    return f"{status}#{due_date}#{invoice_id}"
