"""Merge-field templates: sandboxed Jinja2, checked when saved, rendered when sent.

Users write `{{ work_order.scheduled_date }}` or the numbered `[21]` known from older products;
numbers become names before Jinja sees the text. Unknown fields and syntax errors are refused at
save time with their position, so nothing breaks at noon.

Every render is bounded (mailer.templating.sandbox): loops, ranges, the values built, the output
and the time. Wording over a bound with the sample values is refused at save time; over a bound
only with real values, render raises TemplateLimitExceeded naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache, lru_cache
from typing import Any

from jinja2 import ChainableUndefined, Template, TemplateSyntaxError, nodes
from markupsafe import Markup

from mailer.errors import FieldError, InvalidInput
from mailer.templating.fields import BY_NUMBER, TemplateKind, names_for, sample_context
from mailer.templating.sandbox import BoundedSandbox, TemplateLimitExceeded, render_bounded

NUMBERED = re.compile(r"\[(\d{1,4})\]")
MAX_TEMPLATE_CHARS = 100_000
NESTED_TOO_DEEPLY = "the template is nested too deeply (brackets, tags or operators inside one another)"


@cache
def _environment(autoescape: bool) -> BoundedSandbox:
    # Unknown names are refused at save time; a value missing from one work order renders empty.
    return BoundedSandbox(
        autoescape=autoescape, trim_blocks=True, lstrip_blocks=True, undefined=ChainableUndefined
    )


def _position(source: str, index: int) -> tuple[int, int]:
    line = source.count("\n", 0, index) + 1
    column = index - (source.rfind("\n", 0, index) + 1) + 1
    return line, column


def expand_numbers(source: str, field_name: str = "template") -> str:
    """`[21]` -> `{{ work_order.scheduled_date }}`; an unknown number is an error naming its place."""

    def replace(match: re.Match[str]) -> str:
        number = int(match.group(1))
        merge_field = BY_NUMBER.get(number)
        if merge_field is None:
            line, column = _position(source, match.start())
            raise InvalidInput.on(
                field_name,
                f"unknown merge field [{number}] at line {line}, column {column} (see GET /merge-fields)",
            )
        return "{{ " + merge_field.name + " }}"

    return NUMBERED.sub(replace, source)


def _dotted(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        parent = _dotted(node.node)
        return f"{parent}.{node.attr}" if parent else None
    return None


def _references(tree: nodes.Template) -> Iterator[tuple[str, int]]:
    """Each outermost dotted name the template reads, with its line. Attribute access on anything
    but a merge field (a literal, a call, an item, a private name) is reported as it is written,
    so the save is refused rather than the sandbox stopping the send later."""
    seen: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if id(node) in seen:
            continue
        for inner in node.find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
            seen.add(id(inner))
        if isinstance(node, nodes.Getitem):
            yield "[...]", node.lineno
            continue
        dotted = _dotted(node)
        if dotted is None:
            yield f"(expression).{getattr(node, 'attr', '')}", node.lineno
        elif not isinstance(node, nodes.Name) or node.ctx == "load":
            yield dotted, node.lineno


def _assigned_names(tree: nodes.Template) -> set[str]:
    return {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}


def check_template(source: str, field_name: str, kind: TemplateKind) -> None:
    """Raise InvalidInput naming the field and the position of the first problem."""
    if len(source) > MAX_TEMPLATE_CHARS:
        raise InvalidInput.on(field_name, f"longer than {MAX_TEMPLATE_CHARS} characters")
    try:
        _check(expand_numbers(source, field_name), field_name, kind)
    except RecursionError:  # Jinja parses and compiles recursively
        raise InvalidInput.on(field_name, NESTED_TOO_DEEPLY) from None


def _check(expanded: str, field_name: str, kind: TemplateKind) -> None:
    try:
        tree = _environment(False).parse(expanded)
    except TemplateSyntaxError as exc:
        message = f"template syntax error at line {exc.lineno}: {exc.message}"
        raise InvalidInput.on(field_name, message) from None
    allowed = names_for(kind)
    groups = {name.split(".", 1)[0] for name in allowed}
    local = _assigned_names(tree) | set(_environment(False).globals)
    errors = []
    for dotted, line in _references(tree):
        head = dotted.split(".", 1)[0]
        private = any(part.startswith("_") for part in dotted.split("."))
        if not private and (head in local or dotted in allowed or (dotted in groups and "." not in dotted)):
            continue
        errors.append(FieldError(field_name, f"unknown merge field {{{{ {dotted} }}}} at line {line}"))
    if errors:
        raise InvalidInput("; ".join(e.message for e in errors), errors=errors)
    try:
        render_bounded(_environment(True).from_string(expanded), sample_context(kind))
    except TemplateLimitExceeded as exc:
        raise InvalidInput.on(field_name, exc.message) from None
    except Exception as exc:  # noqa: BLE001 - whatever stops the sample render would stop the send
        raise InvalidInput.on(field_name, f"cannot be filled in: {type(exc).__name__}: {exc}") from None


@lru_cache(maxsize=256)
def _compiled(source: str, html: bool) -> Template:
    """Compiling is nearly all of a render's cost: each wording is compiled once per container."""
    return _environment(html).from_string(expand_numbers(source))


def render(source: str, context: Mapping[str, Any], *, html: bool, field_name: str | None = None) -> str:
    """The wording filled in; TemplateLimitExceeded names `field_name` (by default the body the
    wording is: body_html, or body_text for plain text)."""
    field = field_name or ("body_html" if html else "body_text")
    try:
        template = _compiled(source, html)
    except RecursionError:  # only wording saved before the save-time check refused it
        raise TemplateLimitExceeded(NESTED_TOO_DEEPLY, field) from None
    try:
        return render_bounded(template, context)
    except TemplateLimitExceeded as exc:
        exc.field = field
        raise


def render_subject(source: str, context: Mapping[str, Any]) -> str:
    """Subjects are one line of plain text whatever the merged values hold."""
    return " ".join(render(source, context, html=False, field_name="subject").split())


def safe_html(markup: str) -> Markup:
    """Markup the product itself generates (an <img> for the technician's photo), not user data."""
    return Markup(markup)  # noqa: S704 - built by the product from fixed strings
