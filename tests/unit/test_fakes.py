"""The in-memory fakes (tests/support/fakes.py) offer what the real stores of mailer.dal offer.

Every public method of each real class is on its fake with the same signature, so a unit test
that passes a fake where the code takes the real store calls what the real store has. What the
fakes answer is compared with the real stores under moto in tests/integration/test_fakes_match_stores.py.
"""

from __future__ import annotations

import inspect

import pytest

from mailer.dal import (
    attachments_bucket,
    ledger_table,
    outbox_queue,
    secret_store,
    sent_log_table,
    settings_table,
    work_orders_table,
)
from tests.support import fakes

PAIRS = [
    (settings_table.SettingsStore, fakes.SettingsStore),
    (secret_store.SecretStore, fakes.SecretStore),
    (sent_log_table.SentLogStore, fakes.SentLogStore),
    (work_orders_table.WorkOrderStore, fakes.WorkOrderStore),
    (ledger_table.LedgerStore, fakes.LedgerStore),
    (outbox_queue.OutboxQueue, fakes.OutboxQueue),
    (attachments_bucket.AttachmentStore, fakes.AttachmentStore),
]


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


@pytest.mark.parametrize(("real", "fake"), PAIRS, ids=[real.__name__ for real, _ in PAIRS])
def test_the_fake_has_every_public_method_of_the_real_store_with_its_signature(real: type, fake: type):
    faked = public_methods(fake)

    assert {name: faked.get(name) for name in public_methods(real)} == public_methods(real)


@pytest.mark.parametrize(("real", "fake"), PAIRS, ids=[real.__name__ for real, _ in PAIRS])
def test_the_fake_takes_the_real_constructor_arguments(real: type, fake: type):
    real_parameters = inspect.signature(real).parameters
    fake_parameters = inspect.signature(fake).parameters

    for name, parameter in real_parameters.items():
        assert name in fake_parameters and fake_parameters[name].kind == parameter.kind, name
