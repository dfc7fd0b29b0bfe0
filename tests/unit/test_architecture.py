"""The layer's rooms: AWS only in dal/ (and the SES transport), imports only downwards, no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "layers" / "mailer" / "mailer"
AWS_ALLOWED = ("mailer.dal.", "mailer.delivery.transports.ses")
# Which rooms a room may import from (besides the core modules at the package's top).
CORE = {"mailer.errors", "mailer.ids", "mailer.config", "mailer.identity", "mailer.observability"}
MAY_IMPORT = {
    "delivery": {"delivery"},
    "templating": {"templating"},
    "dal": {
        "dal",
        "work_orders.models",
        "billing.models",
        "sent_log.models",
        "delivery",
        "templating",
        "settings.models",
        "suppression.models",
    },
    "work_orders": {"work_orders", "settings.models", "templating", "delivery"},
    # A domain room beside work_orders: its models and rules know only the rooms below; its use cases
    # (invoices.py, rule_service.py) use dal, as the automations do. A reminder sent on request
    # (remind.py) sends from the company account (settings: its profile, `deliver`, budgets), with the
    # invoice's PDF under document email's attachment policy (documents), into the sent log.
    "billing": {
        "billing",
        "work_orders.models",
        "settings",
        "templating",
        "delivery",
        "dal",
        "documents.attachments",
        "documents.models",
        "sent_log.models",
        "suppression",  # every manual send checks the company's suppression list
    },
    "sent_log": {"sent_log", "dal", "delivery"},
}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(path: Path, *, runtime_only: bool = True) -> set[str]:
    tree = ast.parse(path.read_text())
    guarded = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for n in ast.walk(node)
    }
    found = set()
    for node in ast.walk(tree):
        if runtime_only and id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_boto3_is_imported_only_in_dal_and_the_ses_transport():
    offenders = sorted(
        name
        for name, path in modules().items()
        if any(i.split(".")[0] in ("boto3", "botocore") for i in imports(path))
        and not (name + ".").startswith(AWS_ALLOWED)
        and name != "mailer.delivery.transports.ses"
    )
    assert offenders == []


@pytest.mark.parametrize("room", sorted(MAY_IMPORT))
def test_a_room_imports_only_what_lies_below_it(room):
    allowed = {f"mailer.{r}" for r in MAY_IMPORT[room]} | CORE | {"mailer"}
    wrong = {}
    for name, path in modules().items():
        if not name.startswith(f"mailer.{room}"):
            continue
        bad = {
            i
            for i in imports(path)
            if i.startswith("mailer.")
            and i in modules()
            and not any(i == a or i.startswith(a + ".") for a in allowed)
        }
        if bad:
            wrong[name] = sorted(bad)
    assert wrong == {}


def test_no_module_imports_itself_back_through_others():
    known = modules()
    graph = {name: {i for i in imports(path) if i in known and i != name} for name, path in known.items()}
    cycles = []

    def visit(node: str, trail: list[str], done: set[str]) -> None:
        if node in trail:
            cycles.append([*trail[trail.index(node) :], node])
            return
        if node in done:
            return
        for target in graph[node]:
            visit(target, [*trail, node], done)
        done.add(node)

    done: set[str] = set()
    for name in graph:
        visit(name, [], done)
    # A package's __init__ re-exporting its own modules is not a cycle between rooms.
    real = [c for c in cycles if len({m.rsplit(".", 1)[0] for m in c}) > 1 or len(c) > 2]
    assert real == []
