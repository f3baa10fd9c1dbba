"""The text formats of the structured settings (SPEC §3, §11, §12), with one parser each.

```
payments.packages        "id:credits:price_idr" entries, ids unique → (id, credits, price_idr)
payments.default_method  a Duitku payment method code: 1-4 upper-case letters or digits
flags.values             "name=value" entries; value on | off | true | false | 0..100[%]
                         → (percent, off) by name
```

Config validation (`config_rules`) and the domain that reads the value (`payments.packages`,
`flags`) call the same parser, so a value config accepts is one the domain can use — and
config imports no domain (DESIGN: config knows no domain). Pure: stdlib only, no `lumiku`
import. Each parser raises ValueError saying what is wrong.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Iterable

PACKAGE_ID: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MIN_PRICE_IDR: Final = 10_000  # Duitku's smallest accepted amount
PAYMENT_METHOD: Final = re.compile(r"[A-Z0-9]{1,4}")  # Duitku's method codes: VC, BC, M2, OV…
FLAG_NAME: Final = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


def package_entry(text: str) -> tuple[str, int, int]:
    """`"id:credits:price_idr"` → (id, credits, price_idr)."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"{text!r} is not id:credits:price_idr")
    package_id, credits, price = (p.strip() for p in parts)
    if not PACKAGE_ID.fullmatch(package_id):
        raise ValueError(f"{text!r}: the id must be 1-32 of a-z, 0-9, '_' and '-'")
    if not credits.isdigit() or int(credits) <= 0:
        raise ValueError(f"{text!r}: credits must be a positive integer")
    if not price.isdigit() or int(price) < MIN_PRICE_IDR:
        raise ValueError(f"{text!r}: price_idr must be an integer of at least {MIN_PRICE_IDR}")
    return package_id, int(credits), int(price)


def package_entries(texts: Iterable[str]) -> list[tuple[str, int, int]]:
    """Every entry parsed, in order; refuses a repeated id."""
    entries: list[tuple[str, int, int]] = []
    for text in texts:
        entry = package_entry(text)
        if any(entry[0] == seen[0] for seen in entries):
            raise ValueError(f"package id {entry[0]!r} appears twice")
        entries.append(entry)
    return entries


def payment_method(text: str) -> str:
    """`text` when it is a Duitku method code."""
    if not PAYMENT_METHOD.fullmatch(text):
        raise ValueError(f"{text!r} is not a Duitku payment method code (1-4 letters or digits)")
    return text


def flag_name(name: str) -> str:
    """`name` when it may name a flag."""
    if not FLAG_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a flag name (lower-case a-z, 0-9, '_', '.', '-')")
    return name


def flag_value(text: str) -> tuple[int, bool]:
    """ "on", "off", "true", "false" or a percentage 0..100 ("25" or "25%") → (percent, off)."""
    word = text.strip().lower()
    if word in ("on", "true"):
        return 100, False
    if word in ("off", "false"):
        return 0, True
    number = word.removesuffix("%").strip()
    if not number.isdigit() or not 0 <= int(number) <= 100:
        raise ValueError(f"{text!r} is not on, off or a percentage from 0 to 100")
    return int(number), False


def flag_entries(entries: Iterable[str]) -> dict[str, tuple[int, bool]]:
    """`"name=value"` entries (the `flags.values` setting) by name; the first bad one raises."""
    flags: dict[str, tuple[int, bool]] = {}
    for entry in entries:
        name, sep, value = entry.partition("=")
        if not sep:
            raise ValueError(f"{entry!r} is not name=value")
        flags[flag_name(name.strip())] = flag_value(value)
    return flags
