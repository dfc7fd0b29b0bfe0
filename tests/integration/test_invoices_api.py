"""Invoices and invoice reminder rules through the InvoicesFunction handler, on the template's tables
under moto: sync and read back, versions, refusals naming the field, 404s, tenant isolation, the
indexes a later daily run reads, and the rules with their defaults, bounds, limit and roles."""

from __future__ import annotations

import os
from datetime import date
from typing import Any

import pytest

from local.events import USER, Identity
from mailer.billing.models import Invoice
from mailer.dal.invoices_table import InvoiceStore
from mailer.dal.ledger_table import LedgerStore

OTHER_TENANT = Identity(tenant_id="other", user_id="admin-2", email="admin@other.test")


def invoice_body(number: str = "INV-1001", **changes: Any) -> dict[str, Any]:
    """The body of PUT /invoices/{id}: open, 120.00 USD due 2026-12-01, for a customer who wants email."""
    customer = {
        "id": "C-17",
        "name": "Dana Whitfield",
        "email": "dana@example.com",
        "contact_method": "email",
    }
    return {
        "number": number,
        "status": "open",
        "customer": customer | changes.pop("customer", {}),
        "issue_date": "2026-11-01",
        "due_date": "2026-12-01",
        "total": "120.00",
        "amount_due": "120.00",
        "currency": "USD",
        "payment_url": "https://pay.example/i/1001",
        "pdf_upload_id": None,
    } | changes


def rule_body(**changes: Any) -> dict[str, Any]:
    return {
        "name": "Second notice",
        "active": True,
        "offset_days": 14,
        "repeat_every_days": None,
        "max_sends": None,
        "min_amount_due": "5.00",
        "subject": "Invoice {{ invoice.number }}: second notice",
        "body_html": "<p>Hello {{ customer.first_name }}, {{ invoice.amount_due }} is still open.</p>",
        "body_text": None,
        "attach_pdf": False,
    } | changes


def fields(answer: dict[str, Any]) -> list[str]:
    return [e["field"] for e in answer["errors"]]


@pytest.fixture
def store(api) -> InvoiceStore:
    return InvoiceStore(os.environ["INVOICES_TABLE"])


# --- sync and read back ------------------------------------------------------------------------------


def test_a_synced_invoice_reads_back_as_sent_with_amounts_as_strings(api):
    status, saved, _ = api.call("PUT", "/invoices/INV-1001", invoice_body())
    read_status, read, _ = api.call("GET", "/invoices/INV-1001")

    assert status == 200 and read_status == 200
    assert read == saved
    assert read["id"] == "INV-1001" and read["reminders_sent"] == 0
    assert (read["total"], read["amount_due"], read["currency"]) == ("120.00", "120.00", "USD")
    assert (read["issue_date"], read["due_date"]) == ("2026-11-01", "2026-12-01")
    assert read["customer"] == invoice_body()["customer"]


def test_every_sync_raises_the_version(api):
    first = api.call("PUT", "/invoices/INV-1001", invoice_body())[1]
    second = api.call("PUT", "/invoices/INV-1001", invoice_body(amount_due="60.00"))[1]

    assert (first["version"], second["version"]) == (1, 2)
    assert api.call("GET", "/invoices/INV-1001")[1]["amount_due"] == "60.00"


def test_a_write_on_a_version_no_longer_stored_changes_nothing(api, store):
    api.call("PUT", "/invoices/INV-1001", invoice_body())
    current = store.get("demo", "INV-1001")
    assert current is not None and current.version == 1

    fresh = store.put("demo", current.model_copy(update={"status": "paid"}), expected_version=1)
    stale = store.put("demo", current.model_copy(update={"amount_due": "1.00"}), expected_version=1)

    assert fresh is not None and fresh.version == 2
    assert stale is None
    stored = api.call("GET", "/invoices/INV-1001")[1]
    assert (stored["status"], stored["amount_due"], stored["version"]) == ("paid", "120.00", 2)


def test_reminders_sent_counts_the_sent_ledger_items_of_this_invoice_only(api):
    ledger = LedgerStore(os.environ["LEDGER_TABLE"])
    for key, state in [
        (("demo", "invoice_reminder", "INV-1", "overdue:0"), "sent"),
        (("demo", "invoice_reminder", "INV-1", "overdue:1"), "sent"),
        (("demo", "invoice_reminder", "INV-1", "overdue:2"), "failed"),
        (("demo", "invoice_reminder", "INV-10", "overdue:0"), "sent"),  # the id shares a prefix
        (("other", "invoice_reminder", "INV-1", "overdue:0"), "sent"),
        (("demo", "reminder", "INV-1", "2026-12-01"), "sent"),  # a work order with the same id
    ]:
        assert ledger.claim(key)
        ledger.finish(key, state)

    status, saved, _ = api.call("PUT", "/invoices/INV-1", invoice_body("INV-1"))

    assert status == 200 and saved["reminders_sent"] == 2
    assert api.call("GET", "/invoices/INV-1")[1]["reminders_sent"] == 2


# --- refusals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"total": "12,00"}, "total"),
        ({"amount_due": 12.5}, "amount_due"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "US"}, "currency"),
        ({"due_date": "2026-10-31"}, "due_date"),
        ({"due_date": "2101-01-01"}, "due_date"),
        ({"issue_date": "1999-12-31", "due_date": "2000-01-01"}, "issue_date"),
        ({"payment_url": "http://pay.example/i/1001"}, "payment_url"),
        ({"payment_url": "javascript:alert(1)"}, "payment_url"),
        ({"status": "overdue"}, "status"),
        ({"customer": {"id": "C 17"}}, "customer.id"),
        ({"customer": {"contact_method": "fax"}}, "customer.contact_method"),
        ({"pdf_upload_id": "../../etc/passwd"}, "pdf_upload_id"),
        ({"number": "INV-1\r\nBcc: x@y.example"}, "number"),
        ({"surprise": True}, "surprise"),
    ],
)
def test_a_bad_invoice_is_refused_with_a_422_naming_the_field(api, changes, field):
    status, problem, headers = api.call("PUT", "/invoices/INV-1001", invoice_body(**changes))

    assert status == 422, problem
    assert headers["content-type"] == "application/problem+json"
    assert fields(problem) == [field]
    assert api.call("GET", "/invoices/INV-1001")[0] == 404


def test_an_invoice_id_that_cannot_be_a_key_is_refused(api):
    status, problem, _ = api.call("PUT", "/invoices/INV%231", invoice_body())

    assert status == 422 and fields(problem) == ["invoice_id"]


def test_an_unknown_invoice_is_404(api):
    status, problem, headers = api.call("GET", "/invoices/INV-404")

    assert status == 404 and headers["content-type"] == "application/problem+json"
    assert "INV-404" in problem["detail"]


# --- customers and tenants -----------------------------------------------------------------------------


def test_a_customer_lists_their_invoices_and_only_the_open_ones_when_asked(api):
    api.call("PUT", "/invoices/A", invoice_body("A", due_date="2026-12-20"))
    api.call("PUT", "/invoices/B", invoice_body("B", status="paid"))
    api.call("PUT", "/invoices/C", invoice_body("C", due_date="2026-12-05"))
    api.call("PUT", "/invoices/D", invoice_body("D", customer={"id": "C-99"}))

    status, everything, _ = api.call("GET", "/customers/C-17/invoices")
    _, open_ones, _ = api.call("GET", "/customers/C-17/invoices", query={"status": "open"})
    _, paid, _ = api.call("GET", "/customers/C-17/invoices", query={"status": "paid"})

    assert status == 200
    assert sorted(i["id"] for i in everything["items"]) == ["A", "B", "C"]
    assert [i["id"] for i in open_ones["items"]] == ["C", "A"]  # by due date
    assert [i["id"] for i in paid["items"]] == ["B"]


def test_an_invoice_that_moves_to_another_customer_leaves_the_first_ones_list(api):
    api.call("PUT", "/invoices/A", invoice_body("A"))
    api.call("PUT", "/invoices/A", invoice_body("A", customer={"id": "C-99"}))

    assert api.call("GET", "/customers/C-17/invoices")[1] == {"items": []}
    assert [i["id"] for i in api.call("GET", "/customers/C-99/invoices")[1]["items"]] == ["A"]


def test_an_unknown_status_filter_is_refused_naming_it(api):
    status, problem, _ = api.call("GET", "/customers/C-17/invoices", query={"status": "overdue"})

    assert status == 422 and fields(problem) == ["status"]


def test_another_company_sees_neither_the_invoice_nor_the_customer(api):
    api.call("PUT", "/invoices/INV-1001", invoice_body())

    assert api.call("GET", "/invoices/INV-1001", identity=OTHER_TENANT)[0] == 404
    assert api.call("GET", "/customers/C-17/invoices", identity=OTHER_TENANT)[1] == {"items": []}


def test_the_same_invoice_id_in_another_company_is_another_invoice(api):
    api.call("PUT", "/invoices/INV-1001", invoice_body(amount_due="120.00"))
    theirs = api.call("PUT", "/invoices/INV-1001", invoice_body(amount_due="7.00"), identity=OTHER_TENANT)[1]

    assert theirs["version"] == 1
    assert api.call("GET", "/invoices/INV-1001")[1]["amount_due"] == "120.00"


def test_a_request_without_a_company_is_403(api):
    status, _, _ = api.call("GET", "/invoices/INV-1001", identity=Identity(tenant_id=None))

    assert status == 403


# --- the due-date index a daily run reads ------------------------------------------------------------------


def test_only_open_invoices_of_customers_emailed_at_a_valid_address_are_in_the_due_index(api, store):
    api.call("PUT", "/invoices/OPEN-1", invoice_body("OPEN-1", due_date="2026-12-01"))
    api.call("PUT", "/invoices/OPEN-2", invoice_body("OPEN-2", due_date="2026-12-03"))
    api.call("PUT", "/invoices/LATER", invoice_body("LATER", due_date="2026-12-10"))
    api.call("PUT", "/invoices/PAID", invoice_body("PAID", status="paid"))
    api.call("PUT", "/invoices/VOID", invoice_body("VOID", status="void"))
    api.call("PUT", "/invoices/TEXT", invoice_body("TEXT", customer={"contact_method": "text"}))
    api.call("PUT", "/invoices/BAD", invoice_body("BAD", customer={"email": "not-an-address"}))
    api.call("PUT", "/invoices/THEIRS", invoice_body("THEIRS"), identity=OTHER_TENANT)

    found = store.open_due_between("demo", date(2026, 11, 1), date(2026, 12, 3), page_size=1)

    assert [i.id for i in found] == ["OPEN-1", "OPEN-2"]


def test_an_invoice_paid_after_it_was_open_leaves_the_due_index(api, store):
    api.call("PUT", "/invoices/INV-1001", invoice_body())
    before = [i.id for i in store.open_due_between("demo", date(2026, 12, 1), date(2026, 12, 1))]

    api.call("PUT", "/invoices/INV-1001", invoice_body(status="paid", amount_due="0.00"))

    assert before == ["INV-1001"]
    assert list(store.open_due_between("demo", date(2026, 12, 1), date(2026, 12, 1))) == []


def test_the_store_keeps_amounts_exactly_as_sent(api, store, aws):
    api.call("PUT", "/invoices/INV-1001", invoice_body(total="0.10", amount_due="0.009"))

    item = (
        aws.resource("dynamodb")
        .Table(os.environ["INVOICES_TABLE"])
        .get_item(Key={"pk": "TENANT#demo", "sk": "INV#INV-1001"})["Item"]
    )
    stored = store.get("demo", "INV-1001")

    assert (item["invoice"]["total"], item["invoice"]["amount_due"]) == ("0.10", "0.009")
    assert isinstance(stored, Invoice) and stored.amount_due == "0.009"


# --- reminder rules ----------------------------------------------------------------------------------------


def test_three_inactive_defaults_exist_before_anything_is_saved(api):
    status, rules, _ = api.call("GET", "/invoice-reminders")

    assert status == 200
    assert [(r["rule_id"], r["active"], r["is_default"], r["offset_days"]) for r in rules] == [
        ("before_due", False, True, -3),
        ("on_due", False, True, 0),
        ("overdue", False, True, 7),
    ]
    assert (rules[2]["repeat_every_days"], rules[2]["max_sends"]) == (7, 4)
    assert api.call("GET", "/invoice-reminders/overdue")[1] == rules[2]


def test_an_admin_saves_a_rule_and_everyone_in_the_company_reads_it(api):
    status, saved, _ = api.call("PUT", "/invoice-reminders/second_notice", rule_body())

    assert status == 200
    assert saved["rule_id"] == "second_notice" and saved["is_default"] is False
    assert saved["updated_by"] == "admin@demo.test" and saved["min_amount_due"] == "5.00"
    assert api.call("GET", "/invoice-reminders/second_notice", identity=USER)[1] == saved
    listed = api.call("GET", "/invoice-reminders", identity=USER)[1]
    assert [r["rule_id"] for r in listed] == ["before_due", "on_due", "overdue", "second_notice"]


def test_a_saved_default_replaces_it_and_deleting_it_resets_it(api):
    changed = rule_body(name="Overdue", offset_days=10, repeat_every_days=5, max_sends=3)
    saved = api.call("PUT", "/invoice-reminders/overdue", changed)[1]

    status, reset, _ = api.call("DELETE", "/invoice-reminders/overdue")

    assert (saved["offset_days"], saved["is_default"]) == (10, False)
    assert status == 200 and reset["is_default"] is True and reset["offset_days"] == 7
    assert api.call("GET", "/invoice-reminders/overdue")[1] == reset


def test_deleting_an_own_rule_removes_it(api):
    api.call("PUT", "/invoice-reminders/second_notice", rule_body())

    status, _, _ = api.call("DELETE", "/invoice-reminders/second_notice")

    assert status == 204
    assert api.call("GET", "/invoice-reminders/second_notice")[0] == 404
    assert api.call("DELETE", "/invoice-reminders/second_notice")[0] == 404


def test_an_unknown_rule_is_404(api):
    assert api.call("GET", "/invoice-reminders/never_saved")[0] == 404


def test_another_company_sees_only_the_defaults(api):
    api.call("PUT", "/invoice-reminders/second_notice", rule_body())
    api.call("PUT", "/invoice-reminders/overdue", rule_body(active=True))

    rules = api.call("GET", "/invoice-reminders", identity=OTHER_TENANT)[1]

    assert [(r["rule_id"], r["is_default"]) for r in rules] == [
        ("before_due", True),
        ("on_due", True),
        ("overdue", True),
    ]
    assert api.call("GET", "/invoice-reminders/second_notice", identity=OTHER_TENANT)[0] == 404


def test_only_an_admin_changes_or_deletes_rules(api):
    assert api.call("PUT", "/invoice-reminders/second_notice", rule_body(), identity=USER)[0] == 403
    assert api.call("DELETE", "/invoice-reminders/overdue", identity=USER)[0] == 403
    assert api.call("GET", "/invoice-reminders/second_notice")[0] == 404


def test_the_eleventh_rule_is_a_conflict(api):
    for n in range(7):  # with the three defaults: ten
        assert api.call("PUT", f"/invoice-reminders/extra-{n}", rule_body())[0] == 200

    status, problem, _ = api.call("PUT", "/invoice-reminders/extra-7", rule_body())

    assert status == 409, problem
    assert len(api.call("GET", "/invoice-reminders")[1]) == 10
    assert api.call("PUT", "/invoice-reminders/extra-0", rule_body(name="Changed"))[0] == 200
    assert api.call("PUT", "/invoice-reminders/overdue", rule_body())[0] == 200


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"offset_days": -61}, "offset_days"),
        ({"offset_days": 366}, "offset_days"),
        ({"repeat_every_days": 0}, "repeat_every_days"),
        ({"repeat_every_days": 91}, "repeat_every_days"),
        ({"max_sends": 0}, "max_sends"),
        ({"max_sends": 21}, "max_sends"),
        ({"min_amount_due": "1,00"}, "min_amount_due"),
        ({"min_amount_due": 0.01}, "min_amount_due"),
        ({"min_amount_due": "-1.00"}, "min_amount_due"),
        ({"name": ""}, "name"),
        ({"subject": ""}, "subject"),
        ({"rule_id": "another"}, "rule_id"),
    ],
)
def test_a_rule_out_of_bounds_is_refused_naming_the_field(api, changes, field):
    status, problem, _ = api.call("PUT", "/invoice-reminders/second_notice", rule_body(**changes))

    assert status == 422, problem
    assert fields(problem) == [field]


@pytest.mark.parametrize(("offset", "repeat", "max_sends"), [(-60, 1, 1), (365, 90, 20), (0, None, None)])
def test_a_rule_at_the_bounds_is_saved(api, offset, repeat, max_sends):
    body = rule_body(offset_days=offset, repeat_every_days=repeat, max_sends=max_sends)

    status, saved, _ = api.call("PUT", "/invoice-reminders/second_notice", body)

    assert status == 200, saved
    assert (saved["offset_days"], saved["repeat_every_days"], saved["max_sends"]) == (
        offset,
        repeat,
        max_sends,
    )


@pytest.mark.parametrize("rule_id", ["Overdue", "a" * 41, "over due", "x.y"])
def test_a_rule_id_outside_the_pattern_is_refused(api, rule_id):
    status, problem, _ = api.call("PUT", f"/invoice-reminders/{rule_id.replace(' ', '%20')}", rule_body())

    assert status == 422 and fields(problem) == ["rule_id"]


@pytest.mark.parametrize(
    ("field", "wording", "says"),
    [
        ("body_html", "<p>{{ work_order.number }}</p>", "unknown merge field"),
        ("subject", "Invoice {{ invoice.numbr }}", "unknown merge field"),
        ("body_text", "Due [999]", "unknown merge field [999]"),
        ("body_html", "{% if invoice.number %}unclosed", "syntax error"),
    ],
)
def test_wording_is_checked_when_saved(api, field, wording, says):
    status, problem, _ = api.call("PUT", "/invoice-reminders/second_notice", rule_body(**{field: wording}))

    assert status == 422, problem
    assert fields(problem) == [field] and says in problem["errors"][0]["message"]
    assert api.call("GET", "/invoice-reminders/second_notice")[0] == 404


def test_numbered_merge_fields_are_accepted_in_rule_wording(api):
    status, saved, _ = api.call(
        "PUT", "/invoice-reminders/second_notice", rule_body(subject="Invoice [80] due [82]")
    )

    assert status == 200 and saved["subject"] == "Invoice [80] due [82]"
