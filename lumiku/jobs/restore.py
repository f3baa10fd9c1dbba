"""Restoring terminal events that a crash lost (SPEC §7: every job ends with exactly one
terminal event), after the events this instance could not write while Redis was down
(`EventBus.flush`).

A terminal event is published just after its transaction commits; an instance killed in
between leaves a finished job whose Redis stream never got its `generation:completed`
(`failed`, `cancelled`), and Redis being down at that moment has the same effect. The
reaper of every instance therefore walks the jobs finished since its last look (from
`WINDOW_S` before its start, so a restarted instance covers its own crash), once they are
`SETTLE_S` old, and hands their terminal events to `EventBus.restore`, which stores and
publishes only those missing from their streams: none is ever delivered twice. With the
in-process bus there is nothing to restore (a crash took the memory with it; clients learn
the state from the snapshot).
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import attrs

from lumiku.db.queries import load_queries
from lumiku.jobs.announce import terminal_event
from lumiku.jobs.models import Job

if TYPE_CHECKING:
    from datetime import datetime

    from lumiku.deps import Deps

Q: Final = load_queries("lumiku.jobs")

# How far back a starting instance looks, and how old a finished job must be before it is
# checked (its own instance publishes within milliseconds of the commit).
WINDOW_S: Final = 15 * 60.0
SETTLE_S: Final = 5.0
PAGE: Final = 500
_SMALLEST_ID: Final = uuid.UUID(int=0)


@attrs.define
class RestoreCursor:
    """Where the walk through finished jobs stands: (finished_at, id) of the last one seen."""

    finished_at: datetime
    job_id: uuid.UUID = _SMALLEST_ID

    @classmethod
    def starting(cls, now: datetime) -> RestoreCursor:
        return cls(now - timedelta(seconds=WINDOW_S))


async def restore_terminal_events(deps: Deps, cursor: RestoreCursor, now: datetime) -> int:
    """Restore the lost terminal events of the jobs finished after `cursor` and at least
    `SETTLE_S` before `now`, advancing `cursor` past each page once the bus took it. Returns
    how many were restored; raises `DatabaseError`/`RedisUnavailable` (the cursor then stays
    where it was, so the next call tries again)."""
    if deps.redis is None:
        return 0
    # first what this instance published while Redis was down, so each stream takes its
    # events in order (and a terminal event restored below comes after them)
    await deps.events.flush()
    until = now - timedelta(seconds=SETTLE_S)
    restored = 0
    while True:
        rows = await deps.store.fetch_all(
            Q.finished_after, cursor.finished_at, cursor.job_id, until, PAGE
        )
        jobs = [Job.from_row(row) for row in rows]
        if jobs:
            restored += await deps.events.restore([terminal_event(job) for job in jobs])
            last = jobs[-1]
            assert last.finished_at is not None
            cursor.finished_at, cursor.job_id = last.finished_at, last.id
        if len(jobs) < PAGE:
            return restored
