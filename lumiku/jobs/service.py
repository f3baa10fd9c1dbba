"""What the routes and apps ask of the queue, given `Deps` (SPEC §6).

`submit_job` is THE way every app queues work — validate and price in the app, then this
charges, queues, announces and wakes the workers. `cancel_job` and `retry_job` change a
job's state with their after-change steps (metrics, event, wake-up); the listings read.
Routes call these and never the Store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lumiku import events
from lumiku.credits.ledger import CreditsPolicy
from lumiku.jobs import queue, transitions
from lumiku.jobs.announce import announce, event_data
from lumiku.jobs.models import Transition
from lumiku.jobs.submit import submit
from lumiku.observability.logging import request_id_var

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from uuid import UUID

    from lumiku.accounts.service import User
    from lumiku.db.store import Tx
    from lumiku.deps import Deps
    from lumiku.jobs.models import CancelOutcome, Job, Page, Submission


async def submit_job(
    deps: Deps,
    user: User,
    *,
    app: str,
    kind: str,
    payload: dict[str, Any],
    cost: int,
    priority: int = 0,
    request_id: str | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    extra: Callable[[Tx, Job], Awaitable[None]] | None = None,
) -> Submission:
    """Charge (per the enterprise_unlimited policy) and queue the job in one transaction
    (with the app's own row through `extra`, which may only await its `tx`: it runs inside
    a `Store.unit`), publish `generation:queued` and wake this
    instance's workers. An Idempotency-Key replay returns the first submission untouched.
    Raises InsufficientCredits (nothing written), IdempotencyKeyReused, IdempotencyKeyInUse."""
    job_kind = deps.kinds.kind(kind)
    submission = await submit(
        deps.store,
        user_id=user.id,
        tags=user.tags,
        app=app,
        kind=kind,
        payload=payload,
        cost=cost,
        policy=CreditsPolicy.from_settings(deps.settings.credits),
        priority=priority,
        max_attempts=job_kind.max_attempts,
        request_id=request_id if request_id is not None else request_id_var.get(),
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        extra=extra,
    )
    if not submission.replayed:
        job = submission.job
        deps.jobs.metrics.submitted(kind)
        deps.jobs.metrics.charged(job.app, submission.charged)
        await deps.events.publish(
            events.Event(
                type=events.QUEUED,
                job_id=str(job.id),
                user_id=str(job.user_id),
                seq=job.event_seq,
                ts=events.utc_now(),
                data=event_data(events.QUEUED, job),
            )
        )
        deps.jobs.wake()
    return submission


async def cancel_job(deps: Deps, job_id: UUID, *, user_id: UUID, is_admin: bool) -> CancelOutcome:
    """Cancel a job (`transitions.cancel`): a queued one ends at once, refunded, counted and
    announced; a running one here is stopped now (elsewhere, its instance is signalled).
    Raises NotFound, JobFinished."""
    outcome = await transitions.cancel(deps.store, job_id, user_id=user_id, is_admin=is_admin)
    job = outcome.job
    if not outcome.immediate:
        deps.jobs.cancel_here(job.id)
    elif outcome.changed:  # cancelled while queued; asking again announces nothing
        deps.jobs.metrics.finished(job.kind, job.status)
        deps.jobs.metrics.refunded(job.app, job.refunded)
        await announce(deps.events, Transition(job, job.event_seq, job.refunded))
    return outcome


async def retry_job(deps: Deps, job_id: UUID) -> Job:
    """Queue a failed job again, charging its user again (`transitions.admin_retry`), then
    announce it, count it and wake the workers. Raises NotFound, JobFinished,
    InsufficientCredits."""
    done = await transitions.admin_retry(deps.store, job_id)
    job = done.job
    await deps.events.publish(
        events.Event(
            type=events.QUEUED,
            job_id=str(job.id),
            user_id=str(job.user_id),
            seq=done.event_seq,
            ts=events.utc_now(),
            data={"attempt": job.attempt, "retried_by_admin": True},
        )
    )
    deps.jobs.metrics.submitted(job.kind)
    deps.jobs.metrics.charged(job.app, job.cost)
    deps.jobs.wake()
    return job


async def user_job(deps: Deps, job_id: UUID, *, user_id: UUID, is_admin: bool) -> Job:
    """The job (`queue.get_job`); NotFound when missing or someone else's (unless admin)."""
    return await queue.get_job(deps.store, job_id, user_id=user_id, is_admin=is_admin)


async def user_jobs(
    deps: Deps,
    user_id: UUID,
    *,
    status: str | None,
    kind: str | None,
    limit: int,
    cursor: str | None,
) -> Page:
    """The user's jobs newest first (`queue.list_jobs`)."""
    return await queue.list_jobs(
        deps.store, user_id, status=status, kind=kind, limit=limit, cursor=cursor
    )


async def every_job(deps: Deps, *, status: str | None, limit: int, cursor: str | None) -> Page:
    """Every user's jobs newest first, for admins (`queue.list_admin`)."""
    return await queue.list_admin(deps.store, status=status, limit=limit, cursor=cursor)
