"""Every key shape of every table, in one place. Each key starts with the caller's tenant.

Settings table:  pk TENANT#<tenant>, sk SETTINGS#company | SETTINGS#user/<sub> |
                 DOCTEMPLATE#<type> | AUTOMATION#<type>; sparse index gsi1pk ACTIVE#reminder.
Sent log:        pk TENANT#<tenant>, sk EMAIL#<id>; by_document gsi1pk <pk>#DOC#<type>#<number>;
                 by_work_order gsi2pk <pk>#WO#<id>; by_message_id gsi3pk MID#<provider message id>
                 (keys only, across tenants: an SES event names no tenant).
Work orders:     pk TENANT#<tenant>, sk WO#<id>; by_reminder_date gsi1pk <pk>#START#<date>.
Ledger:          pk TENANT#<tenant>, sk <automation>#<work order>#<occurrence>.
Invoices:        pk TENANT#<tenant>, sk INV#<id>; by_due gsi1pk <pk>#OPEN, gsi1sk <due date>#<id> (open,
                 emailed customers only); by_customer gsi2pk <pk>#CUST#<customer>, gsi2sk <status>#<due>#<id>.
Invoice rules:   in the settings table, sk INVOICE_RULE#<rule id>.
Document events: in the settings table, sk DOCAUTO#<event> (the wording of each event's email).
Statements:      in the settings table, sk STATEMENT_SCHEDULE; sparse gsi1pk ACTIVE#statement.
"""

from __future__ import annotations

SETTINGS_PREFIX = "SETTINGS#"
DOCUMENT_TEMPLATE_PREFIX = "DOCTEMPLATE#"
AUTOMATION_PREFIX = "AUTOMATION#"
INVOICE_RULE_PREFIX = "INVOICE_RULE#"
DOCUMENT_AUTOMATION_PREFIX = "DOCAUTO#"
INVOICE_PREFIX = "INV#"
EMAIL_PREFIX = "EMAIL#"
WORK_ORDER_PREFIX = "WO#"
# Sparse index of the settings table: only active reminders carry it (and, below, each active
# invoice rule and statement schedule), so the schedule tick finds the companies with an active
# automation that have no next run yet with one query each.
ACTIVE_REMINDER_INDEX_PK = "ACTIVE#reminder"
# The same index holds one entry per active invoice reminder rule (gsi1sk: the tenant).
ACTIVE_INVOICE_RULE_INDEX_PK = "ACTIVE#invoice_reminder"
# And one per company whose statement schedule is active (gsi1sk: the tenant).
ACTIVE_STATEMENT_INDEX_PK = "ACTIVE#statement"
STATEMENT_SCHEDULE_SK = "STATEMENT_SCHEDULE"
# A company's next scheduled run (settings table, sk SEND_SCHEDULE), in the same index under
# gsi1pk RUNS#<shard>, gsi1sk <run at, UTC>#<run date>#<tenant>: the tick reads what has come.
SEND_SCHEDULE_SK = "SEND_SCHEDULE"
SUPPRESSION_PREFIX = "SUPPRESS#"  # settings table: SUPPRESS#<address>, the suppression list
RUN_SHARDS = 8


def run_index_pk(shard: int) -> str:
    return f"RUNS#{shard}"


def run_index_sk(run_at: str, run_date: str, tenant_id: str) -> str:
    return f"{run_at}#{run_date}#{tenant_id}"


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


def tenant_of(pk: str) -> str:
    return pk.removeprefix("TENANT#")


def provider_message_id(message_id: str) -> str:
    """What a provider's reports name a message by: SES events its SES id (the left part of the
    `<id@email.amazonses.com>` Message-ID SES gives it), bounce reports the Message-ID itself."""
    plain = message_id.strip().removeprefix("<").removesuffix(">")
    local, _, domain = plain.rpartition("@")
    if local and (domain == "amazonses.com" or domain.endswith(".amazonses.com")):
        return local
    return plain


def message_index_pk(message_id: str) -> str:
    return f"MID#{provider_message_id(message_id)}"


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
