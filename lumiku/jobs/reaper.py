"""The reaper (SPEC §6): on every instance, every lease/2, jobs whose lease expired (their
instance crashed or lost the database) go back to the queue with backoff while attempts
remain, else fail with STALLED and their refund. Each outcome is announced as an event.
Along the way it restores terminal events a crash lost (`jobs.restore`) and purges expired
Idempotency-Keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NoReturn

import trio

from lumiku.jobs.announce import announce
from lumiku.jobs.queue import count_queued, reap
from lumiku.jobs.restore import RestoreCursor, restore_terminal_events
from lumiku.jobs.submit import purge_idempotency_keys
from lumiku.jobs.worker import wall_clock
from lumiku.observability.logging import get_logger
from lumiku.retrying import DEPENDENCY_ERRORS, Retrying

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from lumiku.deps import Deps
    from lumiku.jobs.models import Transition

log = get_logger(__name__)

PURGE_EVERY_S: Final = 3600.0


async def serve_reaper(
    deps: Deps,
    *,
    clock: Callable[[], datetime] = wall_clock,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Reap every `jobs.lease_s / 2` until cancelled. A database or Redis outage is logged
    and retried with backoff (never later than the usual interval); it never ends the task."""
    settings = deps.settings.jobs
    restore_from = RestoreCursor.starting(clock())
    reaping = Retrying("jobs.reaper", deps.troubles)
    restoring = Retrying("jobs.restore", deps.troubles)
    task_status.started()
    next_purge = trio.current_time()
    delay_s = settings.lease_s / 2
    while True:
        await trio.sleep(delay_s)
        delay_s = settings.lease_s / 2
        try:
            for transition in await reap(
                deps.store,
                now=clock(),
                backoff_base_s=settings.backoff_s,
                backoff_max_s=settings.backoff_max_s,
                published_seq=deps.events.last_seq,
            ):
                await _announce(deps, transition)
            deps.jobs.queued = await count_queued(deps.store)
            if trio.current_time() >= next_purge:
                next_purge = trio.current_time() + PURGE_EVERY_S
                await purge_idempotency_keys(deps.store, clock())
        except DEPENDENCY_ERRORS as exc:
            delay_s = reaping.failed(exc, at_most_s=delay_s)  # back soon, never later than usual
        else:
            reaping.succeeded()
        try:
            restored = await restore_terminal_events(deps, restore_from, clock())
        except DEPENDENCY_ERRORS as exc:
            restoring.failed(exc, at_least_s=delay_s, at_most_s=delay_s)  # at the next round
        else:
            restoring.succeeded()
            if restored:
                log.warning("jobs.terminal_events_restored", count=restored)


async def _announce(deps: Deps, transition: Transition) -> None:
    job = transition.job
    log.warning("jobs.reaped", job_id=str(job.id), status=job.status, attempt=job.attempt)
    deps.jobs.metrics.stalled(job.kind)
    if job.finished:
        deps.jobs.metrics.finished(job.kind, job.status)
        deps.jobs.metrics.refunded(job.app, transition.credit_refunded)
    await announce(deps.events, transition)
