"""The job queue's part of the ledger audit (SPEC §5.6), as `Check`s for `reconcile`:

```python
report = await reconcile(store, checks=(*LEDGER_CHECKS, *JOB_CHECKS))
```

- `job_charges`: a job's `charge` entries sum to `cost × charges` (0 for free jobs);
- `job_refunds`: its `refund` entries sum to `cost × (charges - 1) + refunded` (each
  earlier round ended `failed`, fully refunded, before an admin retry charged again);
- `job_unrefunded`: no `failed` job with `refunded < cost`, no `cancelled` one with
  `refunded < cost` and no refund entry for its round;
- `job_charge_without_job`: no `charge` entry referencing a job that does not exist.

Each check is one read-only statement; nothing is ever changed here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from lumiku.credits.reconcile import Check, Discrepancy
from lumiku.jobs.submit import Q

if TYPE_CHECKING:
    from lumiku.db.store import Executor

__all__ = ["JOB_CHECKS"]


async def _job_charges(db: Executor) -> list[Discrepancy]:
    return [
        Discrepancy(
            "job_charges",
            row["user_id"],
            f"job {row['id']} should have been charged {row['expected']} "
            f"but its charge entries sum to {row['actual']}",
            expected=int(row["expected"]),
            actual=int(row["actual"]),
        )
        for row in await db.fetch_all(Q.job_charges_not_matching)
    ]


async def _job_refunds(db: Executor) -> list[Discrepancy]:
    return [
        Discrepancy(
            "job_refunds",
            row["user_id"],
            f"job {row['id']} says {row['expected']} was refunded "
            f"but its refund entries sum to {row['actual']}",
            expected=int(row["expected"]),
            actual=int(row["actual"]),
        )
        for row in await db.fetch_all(Q.job_refunds_not_matching)
    ]


async def _job_unrefunded(db: Executor) -> list[Discrepancy]:
    return [
        Discrepancy(
            "job_unrefunded",
            row["user_id"],
            f"{row['status']} job {row['id']} cost {row['cost']} "
            f"but only {row['refunded']} was refunded",
            expected=int(row["cost"]),
            actual=int(row["refunded"]),
        )
        for row in await db.fetch_all(Q.jobs_not_refunded)
    ]


async def _charges_without_job(db: Executor) -> list[Discrepancy]:
    return [
        Discrepancy(
            "job_charge_without_job",
            row["user_id"],
            f"charge entry {row['id']} ({row['delta']}) references job {row['ref_id']}, "
            "which does not exist",
            actual=int(row["delta"]),
        )
        for row in await db.fetch_all(Q.job_charges_without_job)
    ]


JOB_CHECKS: Final[tuple[Check, ...]] = (
    Check("job_charges", _job_charges),
    Check("job_refunds", _job_refunds),
    Check("job_unrefunded", _job_unrefunded),
    Check("job_charge_without_job", _charges_without_job),
)
