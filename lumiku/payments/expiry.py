"""`serve_payment_expiry`: payments left `pending` past `payments.expiry_s` become `expired`.

Duitku stops accepting money for an order after its expiryPeriod (sent as expiry_s), so a
pending row past its deadline will not be paid; marking it keeps the status page honest.
A late success callback for an expired payment still credits it (money that was paid is
never dropped); a failed one marks it failed.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, NoReturn

import trio

from lumiku.observability.logging import get_logger
from lumiku.payments.service import expire_due
from lumiku.retrying import Retrying

if TYPE_CHECKING:
    from lumiku.db.store import Store
    from lumiku.retrying import TaskTroubles

log = get_logger(__name__)


async def serve_payment_expiry(
    store: Store,
    interval_s: float,
    *,
    troubles: TaskTroubles | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Every `interval_s`, expire what is due and log each order id. A database outage is
    logged and the expiry tried again with backoff until it goes through (`lumiku.retrying`);
    it never ends the task."""
    if not interval_s > 0:
        raise ValueError(f"the expiry interval must be positive, not {interval_s}")
    retrying = Retrying("payments.expiry", troubles)
    task_status.started()
    while True:
        await trio.sleep(interval_s)
        expired = await retrying.call(partial(expire_due, store))
        for order_id in expired:
            log.info("payment.expired", merchant_order_id=order_id)
