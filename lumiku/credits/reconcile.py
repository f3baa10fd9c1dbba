"""The ledger audit (SPEC §5.6): read everything, change nothing, report what disagrees.

`reconcile(store)` runs a list of named checks, each one read-only statement (one snapshot),
and returns a `Report`. `LEDGER_CHECKS` are the ledger's own; other packages add theirs by
passing `checks=(*LEDGER_CHECKS, *JOB_CHECKS)`. Money is never moved here: a discrepancy is
for a human to look at.

`serve_reconciler` runs the audit every interval inside the service and logs the result.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Final, NoReturn

import attrs
import trio

from lumiku.credits.ledger import Q
from lumiku.observability.logging import get_logger
from lumiku.retrying import Retrying

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from uuid import UUID

    from lumiku.db.store import Executor, Store
    from lumiku.retrying import TaskTroubles

__all__ = [
    "LEDGER_CHECKS",
    "Check",
    "Discrepancy",
    "Report",
    "reconcile",
    "serve_reconciler",
]

log: Final = get_logger(__name__)


@attrs.frozen
class Discrepancy:
    """One thing that disagrees: which check (`kind`) found it, for whom, and the numbers."""

    kind: str
    user_id: UUID | None
    detail: str
    expected: int | None = None
    actual: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "user_id": None if self.user_id is None else str(self.user_id),
            "detail": self.detail,
            "expected": self.expected,
            "actual": self.actual,
        }


@attrs.frozen
class Check:
    """A named, read-only check: `run(executor)` returns what it found wrong."""

    name: str
    run: Callable[[Executor], Awaitable[Sequence[Discrepancy]]]


@attrs.frozen
class Report:
    """What one audit saw; `ok` when nothing disagrees."""

    discrepancies: tuple[Discrepancy, ...]
    accounts_checked: int
    entries_checked: int
    checks: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "accounts_checked": self.accounts_checked,
            "entries_checked": self.entries_checked,
            "checks": list(self.checks),
            "discrepancies": [d.as_dict() for d in self.discrepancies],
        }


async def _balance_equals_entries(db: Executor) -> list[Discrepancy]:
    return [
        Discrepancy(
            "balance_equals_entries",
            row["user_id"],
            f"balance {row['balance']} but its entries sum to {row['total']}",
            expected=int(row["total"]),
            actual=row["balance"],
        )
        for row in await db.fetch_all(Q.balances_not_matching_entries)
    ]


async def _newest_entry_matches_balance(db: Executor) -> list[Discrepancy]:
    return [
        Discrepancy(
            "newest_entry_matches_balance",
            row["user_id"],
            f"balance {row['balance']} but the newest entry (id {row['id']}) "
            f"says {row['balance_after']}",
            expected=row["balance_after"],
            actual=row["balance"],
        )
        for row in await db.fetch_all(Q.newest_entries_not_matching_balance)
    ]


async def _entries_have_account(db: Executor) -> list[Discrepancy]:
    return [
        Discrepancy(
            "entries_have_account",
            row["user_id"],
            f"{row['entries']} entries for a user without a credit account",
            actual=row["entries"],
        )
        for row in await db.fetch_all(Q.entries_without_account)
    ]


async def _entry_signs(db: Executor) -> list[Discrepancy]:
    return [
        Discrepancy(
            "entry_sign",
            row["user_id"],
            f"{row['kind']} entry {row['id']} has delta {row['delta']}",
            actual=row["delta"],
        )
        for row in await db.fetch_all(Q.entries_with_wrong_sign)
    ]


async def _unique_refs(db: Executor) -> list[Discrepancy]:
    return [
        Discrepancy(
            "unique_refs",
            None,
            f"{row['entries']} {row['kind']} entries for {row['ref_type']}:{row['ref_id']}",
            expected=1,
            actual=row["entries"],
        )
        for row in await db.fetch_all(Q.duplicate_refs)
    ]


LEDGER_CHECKS: Final[tuple[Check, ...]] = (
    Check("balance_equals_entries", _balance_equals_entries),
    Check("newest_entry_matches_balance", _newest_entry_matches_balance),
    Check("entries_have_account", _entries_have_account),
    Check("entry_sign", _entry_signs),
    Check("unique_refs", _unique_refs),
)


async def reconcile(store: Store, *, checks: Sequence[Check] = LEDGER_CHECKS) -> Report:
    """Run every check against `store` and report; reads only, writes nothing.

    Each check is one statement outside any transaction, so it sees one consistent
    snapshot and holds no write lock (SQLite's writer stays free). Raises `DatabaseError`
    when the database fails.
    """
    accounts = await store.fetch_val(Q.count_accounts)
    entries = await store.fetch_val(Q.count_entries)
    found: list[Discrepancy] = []
    for check in checks:
        found.extend(await check.run(store))
    return Report(tuple(found), int(accounts), int(entries), tuple(c.name for c in checks))


async def serve_reconciler(
    store: Store,
    interval_s: float,
    *,
    checks: Sequence[Check] = LEDGER_CHECKS,
    on_report: Callable[[Report], None] | None = None,
    troubles: TaskTroubles | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Audit the ledger every `interval_s` (first after one interval) until cancelled.

    Logs `credits.reconcile` (info) with the counts, plus one `credits.discrepancy` error
    line per discrepancy, and hands each report to `on_report` (the metrics). A database
    outage is logged (`service.task_retrying`, task `credits.reconciler`) and the audit
    tried again with backoff until it goes through. Holds no resources between runs.
    Raises ValueError at once for an interval that is not positive.
    """
    if not interval_s > 0:
        raise ValueError(f"the reconcile interval must be positive, not {interval_s}")
    retrying = Retrying("credits.reconciler", troubles)
    task_status.started()
    while True:
        await trio.sleep(interval_s)
        report = await retrying.call(partial(reconcile, store, checks=checks))
        for discrepancy in report.discrepancies:
            log.error("credits.discrepancy", **discrepancy.as_dict())
        if on_report is not None:
            on_report(report)
        log.info(
            "credits.reconcile",
            ok=report.ok,
            accounts_checked=report.accounts_checked,
            entries_checked=report.entries_checked,
            discrepancies=len(report.discrepancies),
        )
