"""The formats of structured settings, shared by config validation and the domains."""

from __future__ import annotations

import pytest

from lumiku.setting_formats import (
    flag_entries,
    flag_name,
    flag_value,
    package_entries,
    payment_method,
)


def test_packages_keep_their_order_and_refuse_a_repeated_id() -> None:
    assert package_entries(["pro:500:50000", "starter:100:15000"]) == [
        ("pro", 500, 50000),
        ("starter", 100, 15000),
    ]
    with pytest.raises(ValueError, match="appears twice"):
        package_entries(["a:1:15000", "a:2:20000"])


@pytest.mark.parametrize(
    ("text", "parsed"),
    [("on", (100, False)), ("FALSE", (0, True)), ("0", (0, False)), (" 25% ", (25, False))],
)
def test_flag_values(text: str, parsed: tuple[int, bool]) -> None:
    assert flag_value(text) == parsed


def test_flag_entries_and_names() -> None:
    assert flag_entries(["a=on", " b.c = 10"]) == {"a": (100, False), "b.c": (10, False)}
    with pytest.raises(ValueError, match="not a flag name"):
        flag_name("-a")


def test_payment_methods() -> None:
    assert payment_method("M2") == "M2"
    with pytest.raises(ValueError, match="not a Duitku payment method code"):
        payment_method("m2")
