"""`serve_payment_expiry`: payments left `pending` past `payments.expiry_s` become `expired`.

Duitku stops accepting money for an order after its expiryPeriod (sent as expiry_s), so a
pending row past its deadline will not be paid; marking it keeps the status page honest.
A late success callback for an expired payment still credits it (money that was paid is
never dropped); a failed one marks it failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NoReturn

import trio

from lumiku.errors import DatabaseError
from lumiku.observability.logging import get_logger
from lumiku.payments.service import expire_due

if TYPE_CHECKING:
    from lumiku.db.store import Store

log = get_logger(__name__)


async def serve_payment_expiry(
    store: Store,
    interval_s: float,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Every `interval_s`, expire what is due and log each order id. A database error is
    logged and tried again next time."""
    if not interval_s > 0:
        raise ValueError(f"the expiry interval must be positive, not {interval_s}")
    task_status.started()
    while True:
        await trio.sleep(interval_s)
        try:
            expired = await expire_due(store)
        except DatabaseError as exc:
            log.error("payment.expiry_failed", error=str(exc), error_type=type(exc).__name__)
            continue
        for order_id in expired:
            log.info("payment.expired", merchant_order_id=order_id)
