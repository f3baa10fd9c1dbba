"""The credit packages on sale (SPEC §11): configured server-side, never sent by clients.

`payments.packages` lists them as `"id:credits:price_idr"` strings, e.g.
`"starter:100:15000"`; `parse_package` is the one parser (config validation uses it too).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterable

ID_PATTERN: Final = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MIN_PRICE_IDR: Final = 10_000  # Duitku's smallest accepted amount
PAYMENT_METHOD: Final = re.compile(r"[A-Z0-9]{1,4}")  # Duitku's method codes: VC, BC, M2, OV…


@attrs.frozen
class Package:
    id: str
    credits: int
    price_idr: int

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "credits": self.credits, "price_idr": self.price_idr}


def parse_package(text: str) -> Package:
    """`"id:credits:price_idr"` → Package; ValueError saying what is wrong."""
    parts = text.split(":")
    if len(parts) != 3:
        raise ValueError(f"{text!r} is not id:credits:price_idr")
    package_id, credits, price = (p.strip() for p in parts)
    if not ID_PATTERN.fullmatch(package_id):
        raise ValueError(f"{text!r}: the id must be 1-32 of a-z, 0-9, '_' and '-'")
    if not credits.isdigit() or int(credits) <= 0:
        raise ValueError(f"{text!r}: credits must be a positive integer")
    if not price.isdigit() or int(price) < MIN_PRICE_IDR:
        raise ValueError(f"{text!r}: price_idr must be an integer of at least {MIN_PRICE_IDR}")
    return Package(package_id, int(credits), int(price))


def parse_packages(texts: Iterable[str]) -> dict[str, Package]:
    """Packages by id, in configured order; ValueError on a bad entry or a repeated id."""
    packages: dict[str, Package] = {}
    for text in texts:
        package = parse_package(text)
        if package.id in packages:
            raise ValueError(f"package id {package.id!r} appears twice")
        packages[package.id] = package
    return packages
