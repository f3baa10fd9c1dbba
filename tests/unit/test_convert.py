"""The one converter: strict scalars, arrays only for sequence fields, unknown fields named;
and strict JSON decoding of untrusted text (`decode_json`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from lumiku.convert import (
    INT_MAX,
    INT_MIN,
    MAX_DEPTH,
    MAX_PROBLEMS,
    decode_json,
    structure,
    text_problem,
)
from lumiku.errors import InvalidJson, ValidationFailed


@attrs.frozen
class Inner:
    name: str


@attrs.frozen
class Body:
    tags: tuple[str, ...] = ()
    counts: list[int] = attrs.field(factory=list)
    names: Sequence[str] = ()
    inner: tuple[Inner, ...] = ()


def errors(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        structure(data, Body)
    return [(e.field, e.message) for e in caught.value.errors]


@pytest.mark.parametrize("field", ["tags", "counts", "names", "inner"])
@pytest.mark.parametrize("value", ["warm", {"a": 1}, 3])
def test_a_sequence_field_takes_only_a_json_array(field: str, value: Any) -> None:
    (error,) = errors({field: value})
    assert error[0] == field


def test_arrays_are_structured_item_by_item() -> None:
    body = structure(
        {"tags": ["a"], "counts": [1, 2], "names": ["x"], "inner": [{"name": "n"}]}, Body
    )
    assert body == Body(("a",), [1, 2], ["x"], (Inner("n"),))
    assert errors({"counts": [1, "2"]}) == [("counts.1", "invalid value for type, expected int")]
    assert errors({"inner": [{"name": "n", "x": 1}]}) == [("inner.0.x", "unknown field")]


def test_unknown_fields_and_wrong_types_are_named_together() -> None:
    assert sorted(errors({"tags": "x", "price": 1})) == [
        ("price", "unknown field"),
        ("tags", "invalid value for type, expected tuple"),
    ]


# Strict JSON: decode_json ------------------------------------------------------------------


def refused_fields(raw: bytes | str) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        decode_json(raw)
    return [(e.field, e.message) for e in caught.value.errors]


def invalid_json(raw: bytes | str) -> str:
    with pytest.raises(InvalidJson) as caught:
        decode_json(raw)
    return caught.value.detail


@pytest.mark.parametrize(
    ("escape", "message"),
    [
        ("\\ud800", "must be valid Unicode text (it holds a lone surrogate, U+D800)"),
        ("\\udfff", "must be valid Unicode text (it holds a lone surrogate, U+DFFF)"),
        ("\\ude00\\ud83d", "must be valid Unicode text (it holds a lone surrogate, U+DE00)"),
        ("\\u0000", "must not contain control characters (it holds U+0000)"),
        ("\\u0007", "must not contain control characters (it holds U+0007)"),
        ("\\u000b", "must not contain control characters (it holds U+000B)"),
        ("\\u001b", "must not contain control characters (it holds U+001B)"),
        ("\\u007f", "must not contain control characters (it holds U+007F)"),
        ("\\u0085", "must not contain control characters (it holds U+0085)"),
        ("\\u009f", "must not contain control characters (it holds U+009F)"),
    ],
)
def test_bad_text_anywhere_is_refused_naming_its_field(escape: str, message: str) -> None:
    raw = '{"a": {"b": ["ok", "x' + escape + 'y"]}, "c": "fine"}'
    assert refused_fields(raw) == [("a.b.1", message)]
    assert refused_fields('"' + escape + '"') == [("body", message)]


def test_raw_control_characters_are_refused_as_json() -> None:
    # JSON itself forbids unescaped control characters inside strings.
    assert "position" in invalid_json(b'{"a": "x\x00y"}')


def test_tab_newline_carriage_return_and_paired_surrogates_pass() -> None:
    value = decode_json('{"prompt": "line\\none\\ttab\\r", "smile": "\\ud83d\\ude00"}')
    assert value == {"prompt": "line\none\ttab\r", "smile": "\U0001f600"}


def test_a_bad_key_is_named_with_its_characters_escaped() -> None:
    assert refused_fields('{"ok": 1, "x\\u0000": 2, "nested": {"\\ud800": 3}}') == [
        ("x\\u0000", "field name must not contain control characters (it holds U+0000)"),
        (
            "nested.\\ud800",
            "field name must be valid Unicode text (it holds a lone surrogate, U+D800)",
        ),
    ]


def test_every_problem_is_reported_up_to_a_bound() -> None:
    raw = json.dumps({f"f{i}": "\x00" for i in range(MAX_PROBLEMS * 10)})
    problems = refused_fields(raw)
    assert len(problems) == MAX_PROBLEMS
    assert [field for field, _ in problems] == [f"f{i}" for i in range(MAX_PROBLEMS)]


@pytest.mark.parametrize(
    "literal",
    [
        "1" + "0" * 5000,
        "-1" + "0" * 5000,
        "1" + "0" * 1_000_000,
        str(INT_MAX + 1),
        str(INT_MIN - 1),
        "99999999999999999999",
    ],
)
def test_integers_outside_int64_are_refused_naming_the_field(literal: str) -> None:
    assert refused_fields('{"seed": ' + literal + "}") == [
        ("seed", f"must be an integer between {INT_MIN} and {INT_MAX}")
    ]


def test_the_int64_bounds_themselves_pass() -> None:
    assert decode_json(f"[{INT_MIN}, {INT_MAX}, -0, 0]") == [INT_MIN, INT_MAX, 0, 0]


@pytest.mark.parametrize("literal", ["1e999", "-1e999", "1" + "0" * 400 + ".0"])
def test_numbers_beyond_a_float_are_refused_naming_the_field(literal: str) -> None:
    assert refused_fields('{"x": [' + literal + "]}") == [("x.0", "must be a finite number")]


def test_ordinary_floats_pass() -> None:
    assert decode_json('{"x": 1.5, "y": -2e-3, "z": 1e-999}') == {"x": 1.5, "y": -0.002, "z": 0.0}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_not_json(literal: str) -> None:
    assert invalid_json('{"width": ' + literal + "}").startswith(f"{literal} is not a JSON value")


def test_a_duplicate_key_is_not_json() -> None:
    assert invalid_json('{"email": "a@example.com", "email": "b@example.com"}') == (
        "The key 'email' appears twice in one object."
    )
    assert "appears twice" in invalid_json('{"a": [{"k": 1, "k": 1}]}')
    assert decode_json('{"a": {"k": 1}, "b": {"k": 1}}') == {"a": {"k": 1}, "b": {"k": 1}}


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_nesting_past_the_bound_is_not_json(depth: int) -> None:
    assert "nest deeper" in invalid_json("[" * depth + "]" * depth)
    assert "nest deeper" in invalid_json('{"a":' * depth + "1" + "}" * depth)


def test_unterminated_deep_nesting_is_not_json() -> None:
    assert "nest deeper" in invalid_json("[" * 100_000)


def test_nesting_up_to_the_bound_passes() -> None:
    value = decode_json("[" * MAX_DEPTH + "]" * MAX_DEPTH)
    for _ in range(MAX_DEPTH - 1):
        value = value[0]
    assert value == []


@pytest.mark.parametrize(
    "raw",
    [
        b"\xed\xa0\x80",  # a surrogate encoded in UTF-8: not UTF-8
        b'"\xff"',
        '{"a": 1}'.encode("utf-16"),  # json.loads would detect UTF-16; we take UTF-8 only
        b"\xef\xbb\xbf{}",  # a byte order mark
    ],
)
def test_bodies_that_are_not_utf8_json_are_not_json(raw: bytes) -> None:
    invalid_json(raw)


@pytest.mark.parametrize(
    ("value", "one_line", "problem"),
    [
        ("plain é 😀", False, None),
        ("a\tb\nc\rd", False, None),
        ("a\tb", True, "must not contain control characters (it holds U+0009)"),
        ("a\nb", True, "must not contain control characters (it holds U+000A)"),
        ("a\x00", False, "must not contain control characters (it holds U+0000)"),
        ("\ud800", True, "must be valid Unicode text (it holds a lone surrogate, U+D800)"),
    ],
)
def test_text_problem(value: str, one_line: bool, problem: str | None) -> None:
    assert text_problem(value, one_line=one_line) == problem


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"a": "x\x7fy"}', "must not contain control characters (it holds U+007F)"),
        (b'{"a": "x\xc2\x85y"}', "must not contain control characters (it holds U+0085)"),
        (b'{"a": "x\\by"}', "must not contain control characters (it holds U+0008)"),
        (b'{"a": "x\\fy"}', "must not contain control characters (it holds U+000C)"),
        (b'{"a": "x\\u001Fy"}', "must not contain control characters (it holds U+001F)"),
        (b'{"a": "x\\uDBFFy"}', "must be valid Unicode text (it holds a lone surrogate, U+DBFF)"),
    ],
)
def test_raw_and_short_escaped_controls_are_caught_too(raw: bytes, message: str) -> None:
    assert refused_fields(raw) == [("a", message)]


def test_a_str_with_a_raw_surrogate_is_refused() -> None:
    # Websocket frames arrive as str; one built in-process may hold a surrogate.
    assert refused_fields('{"a": "x\ud800"}') == [
        ("a", "must be valid Unicode text (it holds a lone surrogate, U+D800)")
    ]


def test_what_only_looks_suspicious_passes() -> None:
    # An escaped backslash before "u0000", a digit run inside a string, an escaped emoji.
    raw = r'{"a": "\\u0000 and \\b", "b": "12345678901234567890", "c": "\ud83d\ude00"}'
    assert decode_json(raw) == {"a": "\\u0000 and \\b", "b": "12345678901234567890", "c": "😀"}


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    raw = json.dumps({"a": "[" * 1000 + "{" * 1000, "b": ["x]", "\\[", '"]']})
    assert decode_json(raw)["a"].startswith("[[[")


def test_many_shallow_containers_pass() -> None:
    assert len(decode_json("[" + ",".join(['{"a": [1, {"b": []}]}'] * 5000) + "]")) == 5000


def test_a_4000_digit_integer_is_converted_then_refused() -> None:
    assert refused_fields("[1, " + "9" * 4000 + "]") == [
        ("1", f"must be an integer between {INT_MIN} and {INT_MAX}")
    ]
