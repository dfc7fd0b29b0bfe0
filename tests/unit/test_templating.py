"""Merge-field templates: refused at save time when broken, rendered safely at send time."""

from __future__ import annotations

import time

import pytest
from jinja2 import ChainableUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from mailer.automations.models import DEFAULTS
from mailer.delivery.html_text import html_to_text
from mailer.documents.models import DOCUMENT_TYPES, default_template
from mailer.errors import InvalidInput
from mailer.templating import sandbox
from mailer.templating.engine import check_template, expand_numbers, render, render_subject
from mailer.templating.fields import BY_NAME, MERGE_FIELDS, sample_context
from mailer.templating.sandbox import TemplateLimitExceeded


def test_numbered_and_named_fields_render_the_same_value():
    context = sample_context("automation")

    assert (
        render("[21] / {{ work_order.scheduled_date }}", context, html=False)
        == "November 24, 2026 / November 24, 2026"
    )


def test_html_is_escaped_but_subjects_and_text_are_not():
    context = {"customer": {"name": "<b>O'Brien & Sons</b>"}}

    assert render("{{ customer.name }}", context, html=True) == "&lt;b&gt;O&#39;Brien &amp; Sons&lt;/b&gt;"
    assert render("{{ customer.name }}", context, html=False) == "<b>O'Brien & Sons</b>"


def test_subject_stays_one_line_whatever_the_data_holds():
    assert render_subject("Invoice {{ document.number }}", {"document": {"number": "1\r\nBcc: x@y"}}) == (
        "Invoice 1 Bcc: x@y"
    )


def test_missing_values_render_empty_instead_of_failing():
    assert render("Hi {{ technician.name }}.", {}, html=True) == "Hi ."


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ customer.nmae }}", "unknown merge field {{ customer.nmae }} at line 1"),
        ("ok\n\n[998]", "unknown merge field [998] at line 3, column 1"),
        ("{% for x in %}", "template syntax error at line 1"),
        ("{{ ''.__class__.__mro__ }}", "unknown merge field"),
        ("{{ customer.__dict__ }}", "unknown merge field"),
        ("{{ document.number }}", "unknown merge field {{ document.number }}"),
    ],
)
def test_broken_or_unsafe_templates_are_refused_with_their_place(source, message):
    with pytest.raises(InvalidInput) as caught:
        check_template(source, "body_html", "automation")

    assert caught.value.errors[0].field == "body_html"
    assert message in caught.value.errors[0].message


def test_loops_conditions_filters_and_local_names_are_allowed():
    check_template(
        "{% if technician.name %}{{ technician.name|upper }}{% endif %}"
        "{% set when = work_order.scheduled_date %}{{ when }}{% for i in range(2) %}{{ i }}{% endfor %}",
        "body_html",
        "automation",
    )


def test_registry_has_about_thirty_unique_fields_with_examples():
    numbers = [f.number for f in MERGE_FIELDS]

    assert 25 <= len(MERGE_FIELDS) <= 40 and len(set(numbers)) == len(numbers)
    assert BY_NAME["work_order.scheduled_date"].number == 21
    assert all(f.example and f.description for f in MERGE_FIELDS)


def test_text_alternative_keeps_paragraphs_lists_and_links():
    html = (
        "<style>p{color:red}</style><p>Dear Dana,</p><p>Your invoice:<br>INV-1</p>"
        "<ul><li>one</li><li>two</li></ul><p><a href='https://pay.example/1'>Pay online</a></p>"
    )

    assert (
        html_to_text(html)
        == "Dear Dana,\n\nYour invoice:\nINV-1\n\n- one\n- two\n\nPay online (https://pay.example/1)\n"
    )


# --- bounds: loops, ranges, repetition, output and time ---------------------------------------------

NESTED_LOOPS = (
    "{% for a in range(100) %}{% for b in range(100) %}{% for c in range(100) %}"
    "{% endfor %}{% endfor %}{% endfor %}"
)
HUGE_REPEAT = "{{ 'x' * 10**7 }}"
BIG_RANGE = "{% for i in range(5000) %}.{% endfor %}"
BIG_OUTPUT = "{% for i in range(1000) %}{{ 'x' * 2000 }}{% endfor %}"
SIZED_BY_MERGE_FIELD = "{% for i in range(work_order.number|int) %}<p>{{ customer.name }}</p>{% endfor %}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param(NESTED_LOOPS, "loops may run at most 10,000 times in all", id="nested-loops"),
        pytest.param(HUGE_REPEAT, "`*` would build a value larger than 1 MB", id="repetition"),
        pytest.param(BIG_RANGE, "range() may give at most 1,000 items (asked for 5,000)", id="range"),
        pytest.param(BIG_OUTPUT, "the template's output would exceed 1 MB", id="output"),
    ],
)
@pytest.mark.parametrize("field_name", ["body_html", "subject"])
def test_templates_over_a_bound_are_refused_at_save_time_naming_the_field(source, message, field_name):
    with pytest.raises(InvalidInput) as caught:
        check_template(source, field_name, "automation")

    [error] = caught.value.errors
    assert error.field == field_name and message in error.message
    assert caught.value.detail == f"{field_name}: {error.message}"


def test_a_loop_sized_by_a_merge_field_is_bounded_when_filled_in_with_real_values():
    check_template(SIZED_BY_MERGE_FIELD, "body_html", "automation")  # the sample WO-1001 gives no items
    customer = {"name": "Dana Whitfield"}

    assert render(SIZED_BY_MERGE_FIELD, {"work_order": {"number": "3"}, "customer": customer}, html=True) == (
        "<p>Dana Whitfield</p>" * 3
    )
    with pytest.raises(TemplateLimitExceeded) as caught:
        render(SIZED_BY_MERGE_FIELD, {"work_order": {"number": "5000"}, "customer": customer}, html=True)
    assert caught.value.field == "body_html"
    assert caught.value.message == "range() may give at most 1,000 items (asked for 5,000)"


def test_loops_over_a_long_merge_value_stop_at_the_iteration_bound():
    source = (
        "{% for a in work_order.description %}{% for b in work_order.description %}{% endfor %}{% endfor %}"
    )
    check_template(source, "body_text", "automation")

    with pytest.raises(TemplateLimitExceeded) as caught:
        render(source, {"work_order": {"description": "x" * 4000}}, html=False)
    assert caught.value.field == "body_text" and "loops may run at most 10,000 times" in caught.value.message


def test_a_subject_over_a_bound_names_the_subject():
    with pytest.raises(TemplateLimitExceeded) as caught:
        render_subject("{{ document.number * 200000 }}", {"document": {"number": "INV-1001"}})

    assert caught.value.field == "subject" and "1 MB" in caught.value.message


def test_a_tight_loop_without_output_stops_at_the_time_bound(monkeypatch):
    monkeypatch.setattr(sandbox, "MAX_ITERATIONS", 10**9)
    monkeypatch.setattr(sandbox, "MAX_SECONDS", 0.05)
    started = time.monotonic()

    with pytest.raises(TemplateLimitExceeded) as caught:
        render(NESTED_LOOPS, {}, html=False)

    assert caught.value.message == "the template took more than 0.05 seconds to fill in"
    assert time.monotonic() - started < 1


def test_recursion_without_loops_stops_at_the_time_bound(monkeypatch):
    monkeypatch.setattr(sandbox, "MAX_SECONDS", 0.05)
    doubling = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}"

    with pytest.raises(TemplateLimitExceeded) as caught:
        render(doubling, {}, html=True)
    assert "seconds to fill in" in caught.value.message


_BIG = "{% set big = 'x' * 900000 %}"
_VALUE = "would build a value larger than 1 MB (1,000,000 characters) or holding more than 10,000 items"
_OUTPUT = "the template's output would exceed 1 MB (1,000,000 characters)"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        pytest.param("{{ 'x'|center(10000000) }}", "the filter `center` " + _VALUE, id="filter-center"),
        pytest.param(
            "{{ 'x\\ny'|indent(10000000, true) }}", "the filter `indent` " + _VALUE, id="filter-indent"
        ),
        pytest.param("{{ '%10000000d'|format(1) }}", "the filter `format` " + _VALUE, id="filter-format"),
        pytest.param(
            "{{ 'x'|batch(100000, 'y')|list }}",
            "the filter `batch` may be given at most 1,000",
            id="filter-batch",
        ),
        pytest.param(
            "{{ 'xy'|replace('', 'z' * 900000) }}", "the filter `replace` " + _VALUE, id="filter-replace"
        ),
        pytest.param(_BIG + "{{ [big, big]|join }}", "the filter `join` " + _VALUE, id="filter-join"),
        pytest.param(
            "{{ ['a', 'b']|map('center', 900000)|join }}", "the filter `map` " + _VALUE, id="filter-map-join"
        ),
        pytest.param(
            _BIG + "{{ big|wordwrap(1, wrapstring='\\n' * 10) }}",
            "the filter `wordwrap` " + _VALUE,
            id="wordwrap",
        ),
        pytest.param(
            "{% set s = 'x' %}{{ s.center(10000000) }}", "the method `center` " + _VALUE, id="center"
        ),
        pytest.param(
            "{% set s = '{:>10000000}' %}{{ s.format(1) }}", "the method `format` " + _VALUE, id="format"
        ),
        pytest.param(
            _BIG + "{% set s = '' %}{{ s.join([big, big]) }}", "the method `join` " + _VALUE, id="join"
        ),
        pytest.param(
            "{% set s = 'ab' %}{{ s.replace('', 'z' * 900000) }}",
            "the method `replace` " + _VALUE,
            id="replace",
        ),
        pytest.param(
            "{% set n = 1 %}{{ n.to_bytes(10000000, 'big')|length }}",
            "the method `to_bytes` " + _VALUE,
            id="bytes",
        ),
        pytest.param("{{ '%10000000d' % 1 }}", "`%` " + _VALUE, id="printf"),
        pytest.param(_BIG + "{{ big + big }}", "`+` " + _VALUE, id="plus"),
        pytest.param(_BIG + "{{ big ~ big }}", "`~` " + _VALUE, id="concat"),
        pytest.param(_BIG + "{{ [big] * 2 }}", "`*` " + _VALUE, id="list-repeat"),
        pytest.param(
            _BIG + "{{ [big, big] }}", "the template would print a value larger than 1 MB", id="list-printed"
        ),
        pytest.param("{{ 9 ** (10**8) }}", "`**` would build a number of more than 3,000 digits", id="power"),
        pytest.param(
            "{% set n = 10**2000 %}{{ n * n }}",
            "`*` would build a number of more than 3,000 digits",
            id="product",
        ),
        pytest.param(
            "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "`~` " + _VALUE,
            id="namespace-doubling",
        ),
        pytest.param(
            "{% set ns = namespace(l=[]) %}{% for i in range(40) %}{% set ns.l = ns.l + [ns.l] %}{% endfor %}"
            "{{ ns.l }}",
            "`+` " + _VALUE,
            id="shared-lists",
        ),
        pytest.param(
            "{% set block %}{% for i in range(1000) %}{{ 'y' * 2000 }}{% endfor %}{% endset %}"
            "{{ block|length }}",
            _OUTPUT,
            id="block-set",
        ),
        pytest.param(
            "{% macro m() %}{% for i in range(1000) %}{{ 'y' * 2000 }}{% endfor %}{% endmacro %}"
            "{{ m()|length }}",
            _OUTPUT,
            id="macro-buffer",
        ),
        pytest.param(
            "{% filter truncate(10) %}{% for i in range(1000) %}{{ 'y' * 2000 }}{% endfor %}{% endfilter %}",
            _OUTPUT,
            id="filter-block",
        ),
        pytest.param(
            "{% if false %}{% block b %}{% for i in range(1000) %}{{ 'y' * 2000 }}{% endfor %}{% endblock %}"
            "{% endif %}{{ self.b()|length }}",
            _OUTPUT,
            id="block-reference",
        ),
    ],
)
def test_every_way_to_build_something_huge_is_stopped_quickly(source, message):
    started = time.monotonic()

    with pytest.raises(TemplateLimitExceeded) as caught:
        render(source, {}, html=True)

    assert caught.value.message.startswith(message)
    assert time.monotonic() - started < 1


def test_a_template_that_calls_itself_forever_is_stopped():
    with pytest.raises(TemplateLimitExceeded) as caught:
        render("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", {}, html=True)

    assert caught.value.message == "the template calls itself too deeply"


@pytest.mark.parametrize(
    "source",
    [
        "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}",
        "{% if 1 %}" * 2000 + "{% endif %}" * 2000,
        "{{ " + "-" * 5000 + "1 }}",
    ],
)
def test_wording_nested_too_deeply_is_refused_at_save_time(source):
    with pytest.raises(InvalidInput) as caught:
        check_template(source, "body_html", "automation")

    assert caught.value.errors[0].field == "body_html"
    assert "nested too deeply" in caught.value.errors[0].message


def test_placeholder_text_is_not_offered():
    with pytest.raises(InvalidInput, match="lipsum"):
        check_template("{{ lipsum(5) }}", "body_html", "automation")


REFERENCE = {
    html: ImmutableSandboxedEnvironment(
        autoescape=html, trim_blocks=True, lstrip_blocks=True, undefined=ChainableUndefined
    )
    for html in (True, False)
}
NORMAL_TEMPLATES = [
    "{% for i in range(3) %}<li>{{ i }}{{ '!' * 2 }}</li>{% else %}none{% endfor %}",
    "{% for name in ['Dana', '<b>Luis</b>'] if name %}{{ loop.index }}. {{ name|upper }}\n{% endfor %}",
    "{% for a in range(3) %}{% for b in 'xy' %}{{ a }}{{ b }} {% endfor %}{% endfor %}",
    "{{ customer.name ~ ' / ' ~ work_order.number }} {{ 'a' + 'b' }} {{ [1, 2] + [3, 4] }} {{ (1, 2) * 2 }}",
    "{{ 7 * 6 }} {{ 2 ** 10 }} {{ 7 % 3 }} {{ '%05.1f' % 3.14159 }} {{ '%s-%s'|format('a', 'b') }}",
    "{% set s = '{:>6}|{:<4}|{name}' %}{{ s.format('ab', 1, name=customer.first_name) }}",
    "{{ customer.name|center(30) }}|{{ 'a\nb'|indent(2, true) }}|{{ 'x y z'|replace(' ', '-') }}",
    "{{ [1, 2, 3, 4, 5]|batch(2, 0)|list }} {{ [1, 2, 3]|slice(2)|list }}"
    " {{ range(4)|map('string')|join(',') }}",
    "{{ 'one two three four'|wordwrap(8) }} {{ [[1, 0], [2, 0]]|sum(start=[]) }}"
    " {{ {'a': [1, 2]}|tojson(2) }}",
    "{% set ns = namespace(total=0) %}{% for i in range(5) %}{% set ns.total = ns.total + i %}{% endfor %}"
    "{{ ns.total }} {{ ns }}",
    "{% macro greet(who) %}<p>Hi {{ who }}</p>{% endmacro %}"
    "{{ greet(customer.first_name) }}{{ greet('<x>') }}",
    "{% set block %}<b>{{ customer.name }}</b>{% endset %}{{ block }}"
    "{% filter upper %}{{ block }}{% endfilter %}",
    "{% if technician.name %}{{ technician.name|title }}{% else %}Your technician{% endif %}"
    " {{ none }} {{ 1.5 }}",
    "{% set s = 'a-b-c' %}{{ s.split('-') }} {{ s.upper() }} {{ s.replace('-', '+') }}"
    " {{ '/'.join(['x', 'y']) }}",
    "{{ customer.phone|default('none') }} {{ customer.missing.deeper }} {{ [3, 1, 2]|sort|first }}",
]


@pytest.mark.parametrize("html", [True, False])
@pytest.mark.parametrize("source", NORMAL_TEMPLATES)
def test_normal_templates_render_exactly_as_jinja_renders_them(source, html):
    context = sample_context("automation")

    assert render(source, context, html=html) == REFERENCE[html].from_string(source).render(context)


def test_every_default_wording_renders_exactly_as_before():
    for automation_type, wording in DEFAULTS.items():
        context = sample_context("automation")
        for field_name in ("subject", "body_html"):
            source = str(wording[field_name])
            check_template(source, field_name, "automation")
            expected = (
                REFERENCE[field_name == "body_html"].from_string(expand_numbers(source)).render(context)
            )
            assert render(source, context, html=field_name == "body_html") == expected, automation_type
    for document_type in DOCUMENT_TYPES:
        template = default_template(document_type)
        context = sample_context("document")
        assert render(template.body_html, context, html=True) == REFERENCE[True].from_string(
            template.body_html
        ).render(context)
        assert render_subject(template.subject, context) == " ".join(
            REFERENCE[False].from_string(template.subject).render(context).split()
        )
