"""The one converter: strict scalars, arrays only for sequence fields, unknown fields named."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest

from lumiku.convert import structure
from lumiku.errors import ValidationFailed


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
