"""The banner's invoice commands on the local stack (make run), as a new user follows them: the
overdue rule switched on, the run of a day reminds exactly the due invoices with their PDFs and
payment links, a second run queues nothing, a paid invoice gets nothing more."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

from local import demo_billing
from local.banner import banner
from local.stack import LocalStack
from tests.support.stack import banner_commands, run_curl, running_stack

WAIT_SECONDS = 30


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("invoices")) as stack:
        yield stack


def received(stack: LocalStack, subject_part: str, count: int) -> list[EmailMessage]:
    """The messages whose subject holds `subject_part`, once `count` of them have arrived."""
    assert stack.smtp is not None
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = [m.parsed() for m in stack.smtp.messages if subject_part in str(m.parsed()["Subject"])]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_the_overdue_rule_reminds_the_due_invoices_once_and_a_paid_one_no_more(stack: LocalStack) -> None:
    commands = banner_commands(banner(stack), "Invoices:")
    activate, first_run, pay, second_run, log = commands[:5]

    assert run_curl(activate).status_code == 200
    queued = run_curl(first_run)
    assert queued.status_code == 200 and queued.json() == {"queued": 2}, queued.text
    reminders = received(stack, "is past due", 2)
    assert sorted(str(m["Subject"]) for m in reminders) == [
        f"Invoice {number} is past due" for number in demo_billing.OVERDUE_REMINDED
    ]
    for message in reminders:
        number = str(message["Subject"]).split()[1]
        [pdf] = list(message.iter_attachments())
        assert pdf.get_filename() == f"{number}.pdf" and pdf.get_content().startswith(b"%PDF-")
        html = message.get_body(("html",)).get_content()
        assert f"https://pay.demo.test/i/{number}" in html
    assert run_curl(first_run).json() == {"queued": 0}

    assert run_curl(pay).status_code == 200
    assert run_curl(second_run).json() == {"queued": 1}
    later = received(stack, "is past due", 3)
    assert [str(m["Subject"]) for m in later].count("Invoice INV-3003 is past due") == 1
    assert [str(m["Subject"]) for m in later].count("Invoice INV-3004 is past due") == 2

    entries = run_curl(log).json()["items"]
    assert [e["automation"] for e in entries] == ["invoice_reminder", "invoice_reminder"]


def test_raising_shipment_shipped_sends_the_confirmation_with_the_packing_slip(stack: LocalStack) -> None:
    shipped, inactive, listed = banner_commands(banner(stack), "Document events:")[:3]

    answer = run_curl(shipped)
    assert answer.status_code == 200 and answer.json()["queued"] is True, answer.text
    [confirmation] = received(stack, demo_billing.PACKING_SLIP, 1)
    assert confirmation["To"] == demo_billing.CUSTOMERS["C-101"]["email"]
    [slip] = list(confirmation.iter_attachments())
    assert slip.get_filename() == f"{demo_billing.PACKING_SLIP}.pdf"
    assert slip.get_content() == demo_billing.packing_slip(demo_billing.PACKING_SLIP)

    refused = run_curl(inactive).json()
    assert refused["queued"] is False and "inactive" in refused["reason"]
    assert len(run_curl(listed).json()) == 6


def test_the_statements_of_a_scheduled_day_go_once_to_each_customer(stack: LocalStack) -> None:
    schedule, run, manual = banner_commands(banner(stack), "Statements:")[:3]

    assert run_curl(schedule).status_code == 200
    assert run_curl(run).json() == {"queued": 2}
    statements = received(stack, "Your statement from", 2)
    assert sorted(str(m["To"]) for m in statements) == sorted(
        c["email"] for c in demo_billing.CUSTOMERS.values()
    )
    marcus = next(m for m in statements if m["To"] == demo_billing.CUSTOMERS["C-102"]["email"])
    html = marcus.get_body(("html",)).get_content()
    assert "INV-3002" in html and "INV-3004" in html and "1345.50 USD" in html
    assert run_curl(run).json() == {"queued": 0}

    sent = run_curl(manual)
    assert sent.status_code == 200 and sent.json()["automation"] == "statement", sent.text
