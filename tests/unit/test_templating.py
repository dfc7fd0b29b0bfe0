"""Merge-field templates: refused at save time when broken, rendered safely at send time."""

from __future__ import annotations

import pytest

from mailer.delivery.html_text import html_to_text
from mailer.errors import InvalidInput
from mailer.templating.engine import check_template, render, render_subject
from mailer.templating.fields import BY_NAME, MERGE_FIELDS, sample_context


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
