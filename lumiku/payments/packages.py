"""The credit packages on sale (SPEC §11): configured server-side, never sent by clients.

`payments.packages` lists them as `"id:credits:price_idr"` strings, e.g.
`"starter:100:15000"`; `setting_formats.package_entry` is the one parser of that format
(config validation uses it too).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from lumiku.setting_formats import package_entries, package_entry

if TYPE_CHECKING:
    from collections.abc import Iterable


@attrs.frozen
class Package:
    id: str
    credits: int
    price_idr: int

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "credits": self.credits, "price_idr": self.price_idr}


def parse_package(text: str) -> Package:
    """`"id:credits:price_idr"` → Package; ValueError saying what is wrong."""
    return Package(*package_entry(text))


def parse_packages(texts: Iterable[str]) -> dict[str, Package]:
    """Packages by id, in configured order; ValueError on a bad entry or a repeated id."""
    return {entry[0]: Package(*entry) for entry in package_entries(texts)}
