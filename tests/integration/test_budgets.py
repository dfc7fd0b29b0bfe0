"""Sending budgets per account: limits in the settings, 429 with Retry-After, usage, connection leases.

Through the handlers on moto, with real SMTP servers on loopback counting what arrives. The
concurrency case runs 20 handler processes against one moto server (tests.support.processes), as
20 Lambda containers: the counters hold across them.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from mailer.dal.budget_table import BudgetStore
from mailer.errors import TooManyRequests
from mailer.settings.budget import SendingBudgets, account_id
from mailer.settings.models import SettingsView
from tests.support.factories import smtp_settings
from tests.support.processes import Invocations
from tests.support.steps import save_settings

PASSWORD = "Corr3ct-Horse-Battery"
ACCOUNT = "billing@acme.example"


def fresh_minute() -> None:
    """Start a test early in a minute, so its sends all fall in one per-minute window."""
    into = time.time() % 60
    if into > 45:
        time.sleep(60.5 - into)


@pytest.fixture
def mail_server(smtp_server):
    return smtp_server("starttls", users={ACCOUNT: PASSWORD})


def company_settings(port: int, **limits: Any) -> dict[str, Any]:
    return smtp_settings(ACCOUNT, PASSWORD, port=port, limits=limits)


def test_sends_over_the_per_minute_limit_get_429_with_retry_after_and_nothing_is_sent(
    api, trust_local_ca, mail_server
):
    save_settings(api, company_settings(mail_server.port, per_minute=2))
    fresh_minute()

    answers = [api.call("POST", "/settings/company/test", {}) for _ in range(3)]

    assert [a[0] for a in answers[:2]] == [200, 200] and all(a[1]["ok"] for a in answers[:2])
    status, problem, headers = answers[2]
    assert status == 429 and headers["content-type"] == "application/problem+json"
    assert problem["limit"] == "per_minute" and "2 messages a minute" in problem["detail"]
    assert 1 <= int(headers["retry-after"]) <= 60 and problem["retry_after"] == int(headers["retry-after"])
    assert len(mail_server.messages) == 2
    _, settings, _ = api.call("GET", "/settings/company")
    assert settings["usage"] == {"last_minute": 2, "today": 2}
    assert settings["limits"] == {"per_minute": 2, "per_day": None, "connections": None}


def test_a_document_email_counts_its_recipients_against_the_daily_limit(api, trust_local_ca, mail_server):
    save_settings(api, company_settings(mail_server.port, per_day=3))
    document = {"type": "invoice", "number": "INV-7", "customer_name": "Dana", "amount": "10.00"}
    body = {"document": document, "to": ["a@customer.example", "b@customer.example"], "attachments": []}

    first = api.call("POST", "/documents/email", body)
    second = api.call("POST", "/documents/email", body)  # 2 + 2 recipients > 3

    assert first[0] == 200, first[1]
    assert second[0] == 429 and second[1]["limit"] == "per_day"
    assert "3 recipients a day" in second[1]["detail"]
    assert len(mail_server.messages) == 1
    assert api.call("GET", "/settings/company")[1]["usage"]["today"] == 2


def test_null_limits_are_the_presets_and_bad_limits_are_422_naming_the_field(api):
    office = {"provider": "office365", "username": ACCOUNT, "password": PASSWORD, "from_email": ACCOUNT}

    saved = api.call("PUT", "/settings/company", office | {"limits": {"per_minute": 10}})
    bad = api.call("PUT", "/settings/company", office | {"limits": {"per_minute": 0}})
    unknown = api.call("PUT", "/settings/company", office | {"limits": {"per_hour": 5}})

    assert saved[0] == 200
    assert saved[1]["limits_in_effect"] == {"per_minute": 10, "per_day": 10_000, "connections": 3}
    assert bad[0] == 422 and bad[1]["errors"][0]["field"] == "limits.per_minute"
    assert unknown[0] == 422 and unknown[1]["errors"][0]["field"] == "limits.per_hour"
    assert (
        api.call("GET", "/settings/company")[1]["limits"]["per_minute"] == 10
    )  # the bad PUT changed nothing


def test_an_account_without_a_preset_has_no_budget_but_its_usage_is_counted(api, trust_local_ca, mail_server):
    save_settings(api, company_settings(mail_server.port))
    fresh_minute()

    answers = [api.call("POST", "/settings/company/test", {})[0] for _ in range(4)]

    assert answers == [200] * 4 and len(mail_server.messages) == 4
    view = api.call("GET", "/settings/company")[1]
    assert view["limits_in_effect"] == {"per_minute": None, "per_day": None, "connections": None}
    assert view["usage"] == {"last_minute": 4, "today": 4}


# --- connection leases, on the real table ------------------------------------------------------------


def smtp_view(connections: int) -> SettingsView:
    return SettingsView.model_validate(
        {
            "profile": "company",
            "transport": "smtp",
            "host": "127.0.0.1",
            "port": 2525,
            "username": ACCOUNT,
            "from_email": ACCOUNT,
            "limits": {"connections": connections},
        }
    )


def test_connection_slots_are_leased_refused_when_all_are_held_and_freed_by_expiry(aws, function_env):
    import os

    now = [1_800_000_000.0]
    budgets = SendingBudgets(BudgetStore(os.environ["BUDGET_TABLE"]), clock=lambda: now[0])
    view = smtp_view(connections=2)

    first = budgets.lease("acme", view, seconds=30)
    second = budgets.lease("acme", view, seconds=30)
    with pytest.raises(TooManyRequests) as refused:
        budgets.lease("acme", view, seconds=30)
    assert first is not None and second is not None and {first.slot, second.slot} == {0, 1}
    assert refused.value.limit == "connections" and refused.value.retry_after == 31
    assert budgets.lease("other", view, seconds=30) is not None  # another tenant's account

    first.release()
    again = budgets.lease("acme", view, seconds=30)  # the freed slot
    assert again is not None and again.slot == first.slot

    now[0] += 31  # the holders died without releasing: their leases run out
    taken_over = [budgets.lease("acme", view, seconds=30) for _ in range(2)]
    assert all(lease is not None for lease in taken_over)
    second.release()  # a release by an owner whose lease was taken over frees nothing
    with pytest.raises(TooManyRequests):
        budgets.lease("acme", view, seconds=30)


def test_admit_counts_what_fits_and_leaves_the_rest(aws, function_env):
    import os

    now = [1_800_000_010.0]
    budgets = SendingBudgets(BudgetStore(os.environ["BUDGET_TABLE"]), clock=lambda: now[0])
    view = smtp_view(connections=1).model_copy(
        update={"limits": smtp_view(1).limits.model_copy(update={"per_minute": 5})}
    )

    assert budgets.admit("acme", view, [1, 1, 1]).count == 3
    assert budgets.admit("acme", view, [1, 1, 1]).count == 2  # 3 + 2 = 5 a minute
    refused = budgets.admit("acme", view, [1])
    assert refused.count == 0 and refused.retry_after == 50  # the next minute, 10 s into this one
    now[0] += 60
    assert budgets.admit("acme", view, [1] * 7).count == 5
    assert budgets.usage("acme", view).model_dump() == {"last_minute": 5, "today": 10}


def test_two_profiles_on_one_mailbox_share_a_budget():
    company = smtp_view(1)
    mine = company.model_copy(update={"profile": "me", "from_name": "Dana"})
    elsewhere = company.model_copy(update={"host": "mail.other.example"})

    assert account_id("acme", company) == account_id("acme", mine)
    assert account_id("acme", company) != account_id("acme", elsewhere)
    assert account_id("acme", company) != account_id("zeta", company)


# --- 20 containers at once --------------------------------------------------------------------------


def test_twenty_containers_at_once_send_exactly_the_per_minute_limit(shared_api, template, mail_server):
    save_settings(shared_api, company_settings(mail_server.port, per_minute=12))
    fresh_minute()
    minute = int(time.time() // 60)

    with Invocations(template) as runs:
        for _ in range(20):
            runs.add("POST", "/settings/company/test", {})
        runs.start()
        answers = runs.answers()

    statuses = sorted(a[0] for a in answers)
    assert statuses == [200] * 12 + [429] * 8, [a[1] for a in answers if a[0] not in (200, 429)]
    assert len(mail_server.messages) == 12
    usage = shared_api.call("GET", "/settings/company")[1]["usage"]
    if int(time.time() // 60) == minute:  # the window of the sends is still the current one
        assert usage["last_minute"] == 12
