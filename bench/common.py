"""What the benchmarks share: interleaved rounds, ratio tables, TLS material, the SMTP sink,
AWS call counting, the mail every benchmark sends, and seeding work orders and invoices.

Absolute times on a shared 2-core machine are noise: every benchmark runs its contenders side by
side in alternating rounds and reports medians of per-round ratios.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import random
import statistics
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from mailer.billing.models import Invoice

ROOT = Path(__file__).resolve().parent.parent
TENANT = "acme"
ACCOUNT = "office@acme.example"
PASSWORD = "Corr3ct-Horse-Battery"  # the loopback sink's only account
RUN_DATE = date(2026, 11, 23)
TOMORROW = RUN_DATE + timedelta(days=1)
ZONE = "America/Chicago"

# One reminder as a company would write it: every message of benchmarks 1 and 2 renders these.
SUBJECT = "Reminder: your appointment on [20], [21] with {{ company.name }}"
BODY_HTML = """\
<div style="font-family: Arial, sans-serif; font-size: 15px; color: #222; max-width: 600px">
<p>Hello {{ customer.first_name }},</p>
<p>This is a friendly reminder of your appointment with <b>{{ company.name }}</b> on
{{ work_order.scheduled_day }}, {{ work_order.scheduled_date }}, between {{ work_order.arrival_window }}.</p>
<table style="border-collapse: collapse; margin: 12px 0" cellpadding="6">
<tr><td style="color: #666">Work order</td><td>{{ work_order.number }}</td></tr>
<tr><td style="color: #666">Service</td><td>{{ work_order.description }}</td></tr>
{% if site.address %}<tr><td style="color: #666">Address</td><td>{{ site.address }}</td></tr>{% endif %}
{% if technician.name %}<tr><td style="color: #666">Technician</td>
<td>{{ technician.name }}</td></tr>{% endif %}
</table>
<p>Please make sure someone over 18 is home, pets are secured and the work area is clear.
If you need to reschedule, reply to this email or call us at least 24 hours ahead.</p>
<p>Thank you for choosing {{ company.name }}.</p>
<p style="color: #888; font-size: 12px">{{ company.name }} &middot; {{ company.email }}<br>
You receive this email because you booked a visit with us.</p>
</div>
"""
BODY_TEXT = """\
Hello {{ customer.first_name }},

This is a friendly reminder of your appointment with {{ company.name }} on {{ work_order.scheduled_day }},
{{ work_order.scheduled_date }}, between {{ work_order.arrival_window }}.

Work order: {{ work_order.number }}
Service: {{ work_order.description }}
{% if site.address %}Address: {{ site.address }}
{% endif %}{% if technician.name %}Technician: {{ technician.name }}
{% endif %}
Please make sure someone over 18 is home, pets are secured and the work area is clear.
If you need to reschedule, reply to this email or call us at least 24 hours ahead.

Thank you for choosing {{ company.name }}.
"""


# --- environment -----------------------------------------------------------------------------------


def fake_aws_environment() -> None:
    """Never reach a real AWS account (as tests/conftest.py does); Powertools as the tests run it."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_NAMESPACE="CompanyMailBench",
        POWERTOOLS_DEV="false",
    )
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="No application metrics to publish")


def function_environment(template: Any, logical_ids: Iterable[str] | None = None) -> None:
    """Put the functions' template variables in os.environ, as tests/conftest.py's `api` fixture does."""
    for logical in logical_ids or template.functions():
        for key, value in template.function_environment(logical).items():
            if key != "POWERTOOLS_SERVICE_NAME":
                os.environ[key] = value
    os.environ["MAILER_ALLOWED_NETWORKS"] = "127.0.0.1/32,::1/128"  # the sink is on loopback


def load_function(template: Any, logical_id: str) -> ModuleType:
    """Import a function's handler module from its CodeUri under a name of its own (as the tests do)."""
    name = f"fn_{logical_id}"
    if name in sys.modules:
        return sys.modules[name]
    path, _ = template.handler_path(logical_id)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_DEVNULL = open(os.devnull, "w")


def quiet_powertools() -> None:
    """Powertools Logger formats every record as deployed (INFO) but writes it to /dev/null."""
    for logger in logging.Logger.manager.loggerDict.values():
        if isinstance(logger, logging.Logger):
            for handler in logger.handlers:
                if isinstance(handler, logging.StreamHandler) and handler.stream in (
                    sys.stdout,
                    sys.__stdout__,
                ):
                    handler.setStream(_DEVNULL)


@contextlib.contextmanager
def no_stdout() -> Iterator[None]:
    """Metrics' EMF lines are printed; the tables are what the reader wants on stdout."""
    with contextlib.redirect_stdout(_DEVNULL):
        yield


# --- rounds and tables -----------------------------------------------------------------------------


def interleaved(
    contenders: dict[str, Callable[[], float]],
    rounds: int,
    warmup: int = 1,
    on_round: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """Run every contender once per round, rotating who goes first; each returns its own seconds.
    Warm-up rounds (imports, caches, TLS session setup) are dropped. `on_round(i)` is told which
    measured round (0-based) starts, so a contender can work on that round's slice of the data."""
    names = list(contenders)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for index in range(warmup + rounds):
        if on_round is not None:
            on_round(max(index - warmup, 0))
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            elapsed = contenders[name]()
            if index >= warmup:
                seconds[name].append(elapsed)
    return seconds


def median_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median over rounds of numerator[i] / denominator[i] (values from the same round)."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]], left: int = 1) -> str:
    """A plain-text table: the first `left` columns left-aligned, the (numeric) rest right-aligned."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [f"\n{title}", ""]
    for n, row in enumerate(cells):
        lines.append(
            "  ".join(
                c.ljust(w) if i < left else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass
class Verdict:
    benchmark: str
    target: str
    measured: str
    met: bool

    def row(self) -> list[str]:
        return [self.benchmark, self.target, self.measured, "met" if self.met else "MISSED"]


@dataclass
class Report:
    """What one benchmark hands the runner: its printed tables and its verdicts against the targets."""

    name: str
    tables: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def add(self, text: str) -> None:
        self.tables.append(text)
        print(text, flush=True)

    def judge(self, target: str, measured: str, met: bool) -> None:
        self.verdicts.append(Verdict(self.name, target, measured, met))


# --- TLS and the SMTP sink -------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA (trustme): the bundle clients trust and the server's key and chain."""

    ca_bundle: str
    server_chain: str

    @classmethod
    def create(cls, directory: Path) -> TlsFiles:
        import trustme

        ca = trustme.CA()
        leaf = ca.issue_cert("localhost", "127.0.0.1")
        bundle, chain = directory / "ca.pem", directory / "server.pem"
        ca.cert_pem.write_to_path(str(bundle))
        leaf.private_key_and_cert_chain_pem.write_to_path(str(chain))
        return cls(str(bundle), str(chain))


# --- AWS calls -------------------------------------------------------------------------------------


class AwsCalls:
    """Counts botocore API calls by operation while `recording`, with the time spent inside them and,
    of that, inside moto's backends (what the network and DynamoDB itself take when deployed)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.call_seconds = 0.0
        self.moto_seconds = 0.0
        self._depth = 0

    def reset(self) -> None:
        self.counts.clear()
        self.call_seconds = self.moto_seconds = 0.0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @contextlib.contextmanager
    def recording(self) -> Iterator[AwsCalls]:
        import botocore.client
        from moto.core.botocore_stubber import BotocoreStubber

        original_call = botocore.client.BaseClient._make_api_call
        original_moto = BotocoreStubber.process_request
        calls = self

        def make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            calls._depth += 1
            started = time.perf_counter()
            try:
                return original_call(client, operation, params)
            finally:
                calls._depth -= 1
                if calls._depth == 0:
                    calls.counts[operation] += 1
                    calls.call_seconds += time.perf_counter() - started

        def process_request(stubber: Any, request: Any) -> Any:
            started = time.perf_counter()
            try:
                return original_moto(stubber, request)
            finally:
                calls.moto_seconds += time.perf_counter() - started

        botocore.client.BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]
        BotocoreStubber.process_request = process_request  # type: ignore[method-assign]
        try:
            yield self
        finally:
            botocore.client.BaseClient._make_api_call = original_call  # type: ignore[method-assign]
            BotocoreStubber.process_request = original_moto  # type: ignore[method-assign]


# --- the mail ----------------------------------------------------------------------------------------


def pdf_bytes(size: int, seed: int = 0) -> bytes:
    """A file that starts and ends like a PDF, with incompressible bytes in between."""
    head, tail = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", b"\n%%EOF\n"
    return head + random.Random(seed).randbytes(size - len(head) - len(tail)) + tail


def work_order_body(number: str, start: date, **changes: Any) -> dict[str, Any]:
    """A work order as the business application syncs it (tests/integration/test_automated_email.py)."""
    customer = {
        "name": f"Dana Whitfield {number}",
        "email": f"{number.lower()}@customer.example",
        "contact_method": "email",
    }
    return {
        "id": number,
        "number": number,
        "status": "scheduled",
        "confirmation_status": "none",
        "scheduled_start": f"{start.isoformat()}T09:00:00-06:00",
        "scheduled_end": f"{start.isoformat()}T11:00:00-06:00",
        "customer": customer | changes.pop("customer", {}),
        "technician": {"name": "Luis Ortega"},
        "site_address": "1420 W Elm St, Springfield",
        "description": "Furnace tune-up and safety inspection",
        "updated_at": "2026-11-20T15:00:00Z",
    } | changes


def contexts(count: int) -> list[dict[str, Any]]:
    """The merge-field context of `count` reminders, built as AutomatedEmail.render builds it."""
    from mailer.work_orders.models import WorkOrder, work_order_context

    zone = ZoneInfo(ZONE)
    today = datetime.combine(RUN_DATE, datetime.min.time(), zone)
    company = {"name": "Acme Plumbing", "email": ACCOUNT, "reply_to": ACCOUNT}
    found = []
    for n in range(count):
        work_order = WorkOrder.model_validate(work_order_body(f"WO-{n:05d}", TOMORROW))
        context = work_order_context(work_order, zone, photo=False)
        context["company"] = company
        context["today"] = f"{today:%B} {today.day}, {today.year}"
        found.append(context)
    return found


# --- seeding -----------------------------------------------------------------------------------------


def seed_work_orders(table_name: str, tenant_id: str, bodies: Iterable[dict[str, Any]]) -> int:
    """Write work orders with the exact item WorkOrderStore makes (version 1), through one batch
    writer (25 items a BatchWriteItem) instead of one write each."""
    from mailer.dal import clients as aws_clients
    from mailer.dal.work_orders_table import stored_item
    from mailer.work_orders.models import WorkOrder

    written = 0
    with aws_clients.dynamodb_table(table_name).batch_writer() as writer:
        for body in bodies:
            writer.put_item(Item=stored_item(tenant_id, WorkOrder.model_validate(body), 1))
            written += 1
    return written


def company_settings(port: int) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": port,
        "security": "starttls",
        "username": ACCOUNT,
        "password": PASSWORD,
        "from_name": "Acme Plumbing",
        "from_email": ACCOUNT,
        "notify_email": "owner@acme.example",
        "timezone": ZONE,
    }


def setup_tenant(services: Any, tenant_id: str, smtp_port: int) -> None:
    """Company settings (password to Secrets Manager) and an active reminder, through the layer's services."""
    from mailer.automations.models import AutomationInput
    from mailer.identity import Caller
    from mailer.settings.models import SettingsInput

    admin = Caller(tenant_id=tenant_id, user_id="admin", email="admin@acme.example", is_admin=True)
    services.settings.save(admin, "company", SettingsInput.model_validate(company_settings(smtp_port)))
    reminder = AutomationInput(subject=SUBJECT, body_html=BODY_HTML, body_text=BODY_TEXT, active=True)
    services.automations.save(admin, "reminder", reminder)


def invoice_record(n: int, due: date, **changes: Any) -> Invoice:
    """An invoice as the business application syncs it (PUT /invoices/{id}), open and emailed unless
    `changes` say otherwise (`status`, `customer`)."""
    from mailer.billing.models import Invoice

    customer = {
        "id": f"CUST-{n % 5000:05d}",
        "name": f"Dana Whitfield {n}",
        "email": f"inv{n:06d}@customer.example",
        "contact_method": "email",
    }
    body = {
        "id": f"INV-{n:06d}",
        "number": f"INV-{n:06d}",
        "status": "open",
        "customer": customer | changes.pop("customer", {}),
        "issue_date": (due - timedelta(days=30)).isoformat(),
        "due_date": due.isoformat(),
        "total": "120.00",
        "amount_due": "120.00",
        "currency": "USD",
        "payment_url": f"https://pay.acme.example/INV-{n:06d}",
        "updated_at": "2026-11-20T15:00:00Z",
    }
    return Invoice.model_validate(body | changes)


def seed_invoices(table_name: str, tenant_id: str, invoices: Iterable[Invoice]) -> int:
    """Write invoices with the exact item InvoiceStore makes (version 1, with their places in the
    by_due and by_customer indexes), through one batch writer instead of one write each."""
    from mailer.dal import clients as aws_clients
    from mailer.dal.invoices_table import stored_item

    written = 0
    with aws_clients.dynamodb_table(table_name).batch_writer() as writer:
        for invoice in invoices:
            writer.put_item(Item=stored_item(tenant_id, invoice, 1))
            written += 1
    return written
