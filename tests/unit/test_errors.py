from __future__ import annotations

import pytest

from lumiku.errors import Unavailable, sole_exception, unwrapping_sole_exception


def test_a_lone_exception_in_nested_groups_comes_out_unwrapped() -> None:
    inner = Unavailable("db down")
    with pytest.raises(Unavailable) as caught, unwrapping_sole_exception():
        raise ExceptionGroup("outer", [ExceptionGroup("inner", [inner])])
    assert caught.value is inner


def test_a_group_of_several_passes_through_unchanged() -> None:
    group = ExceptionGroup("two", [Unavailable("a"), ValueError("b")])
    with pytest.raises(ExceptionGroup) as caught, unwrapping_sole_exception():
        raise group
    assert caught.value is group


def test_plain_exceptions_are_untouched() -> None:
    with pytest.raises(KeyError), unwrapping_sole_exception():
        raise KeyError("x")


def test_sole_exception_of_a_plain_error_is_itself() -> None:
    error = ValueError("x")
    assert sole_exception(error) is error
