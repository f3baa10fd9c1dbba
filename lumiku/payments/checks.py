"""The payments' part of the ledger audit (SPEC §5.6, §11), as `Check`s for `reconcile`:

- `payment_purchase`: every `success` payment has exactly one `purchase` entry, of its
  credits, for its user;
- `purchase_without_payment`: no `purchase` entry lacks a `success` payment of its user.

Each check is one read-only statement; nothing is ever changed here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from lumiku.credits.reconcile import Check, Discrepancy
from lumiku.payments.service import Q

if TYPE_CHECKING:
    from lumiku.db.store import Executor

__all__ = ["PAYMENT_CHECKS"]


async def _payment_purchase(db: Executor) -> list[Discrepancy]:
    return [
        Discrepancy(
            "payment_purchase",
            row["user_id"],
            f"payment {row['merchant_order_id']} succeeded for {row['expected']} credits but "
            f"has {row['entries']} purchase entries summing to {row['actual']}",
            expected=int(row["expected"]),
            actual=int(row["actual"]),
        )
        for row in await db.fetch_all(Q.success_without_one_purchase)
    ]


async def _purchase_without_payment(db: Executor) -> list[Discrepancy]:
    return [
        Discrepancy(
            "purchase_without_payment",
            row["user_id"],
            f"purchase entry {row['id']} ({row['delta']} credits, "
            f"{row['ref_type']}:{row['ref_id']}) has no successful payment",
            actual=int(row["delta"]),
        )
        for row in await db.fetch_all(Q.purchase_without_success)
    ]


PAYMENT_CHECKS: Final[tuple[Check, ...]] = (
    Check("payment_purchase", _payment_purchase),
    Check("purchase_without_payment", _purchase_without_payment),
)
