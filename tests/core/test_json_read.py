"""core.encoding.json_read: JSON nested too deeply is a ValueError, whatever the
interpreter's recursion limit (web3 raises it to 100,000: the parser would then run past
the C stack and crash the process)."""

from __future__ import annotations

import sys
from decimal import Decimal

import pytest

from core.encoding import JSON_DEPTH_MAX, json_nesting_within, json_read


@pytest.mark.parametrize(
    ("text", "within"),
    [
        ('{"a": [1, {"b": []}]}', True),
        ("[" * JSON_DEPTH_MAX + "]" * JSON_DEPTH_MAX, True),
        ("[" * (JSON_DEPTH_MAX + 1) + "]" * (JSON_DEPTH_MAX + 1), False),
        ('{"a":' * (JSON_DEPTH_MAX + 1) + "1" + "}" * (JSON_DEPTH_MAX + 1), False),
        ("[" + "[1], " * 500 + "[]]", True),  # many brackets, two levels
        ('["' + "[" * 500 + '"]', True),  # brackets in a string do not nest
        ('["\\"' + "{" * 500 + '"]', True),  # nor after an escaped quote
        ("[" * 60 + '"]"' + "]" * 60, True),
    ],
)
def test_nesting_is_measured_outside_strings(text, within):
    assert json_nesting_within(text) is within


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_too_deep_is_a_value_error_whatever_the_recursion_limit(opening):
    closing = "]" if opening == "[" else "}"
    text = opening * 100_000 + ("" if opening == "[" else "1") + closing * 100_000
    with pytest.raises(ValueError, match="nested"):
        json_read(text)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200_000)  # as importing web3 does (py_ecc: 100,000)
    try:
        with pytest.raises(ValueError, match="nested"):
            json_read(text)
    finally:
        sys.setrecursionlimit(limit)


def test_what_is_within_reads_as_json_loads():
    text = '{"a": [1, 2.5, {"b": "[[["}], "c": null}'
    assert json_read(text) == {"a": [1, 2.5, {"b": "[[["}], "c": None}


@pytest.mark.parametrize(
    "text",
    [
        '{"quantity": "0.01", "quantity": "5"}',
        '{"a": 1, "b": 2, "a": 1}',  # the same value twice too
        '[{"ok": 1}, {"x": {"y": 1, "y": 2}}]',  # at any depth
    ],
)
def test_an_object_naming_a_member_twice_is_a_value_error(text):
    with pytest.raises(ValueError, match="twice"):
        json_read(text)


def test_names_that_differ_only_by_escapes_are_the_same_name():
    with pytest.raises(ValueError, match="twice"):
        json_read('{"side": "buy", "\\u0073ide": "sell"}')
    assert json_read('{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}') == {"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}


@pytest.mark.parametrize("number", ["1e" + "9" * 5000, "-1.5E+" + "9" * 40, "1e-" + "9" * 30])
def test_a_number_beyond_what_a_decimal_holds_is_a_value_error(number):
    """Valid JSON, but its exponent is past what a Decimal holds: Decimal() raised
    InvalidOperation, which no caller's `except ValueError` answers (a 500 on POST
    /api/orders, by bearer token or not, and on the staff amounts)."""
    with pytest.raises(ValueError, match="number"):
        json_read('{"price": ' + number + "}", parse_float=Decimal)
