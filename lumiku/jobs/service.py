"""`submit_job`: THE way every app queues work (SPEC §6) — validate and price in the app,
then this charges, queues, announces and wakes the workers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lumiku import events
from lumiku.credits.ledger import CreditsPolicy
from lumiku.jobs.announce import event_data
from lumiku.jobs.submit import submit
from lumiku.observability.logging import request_id_var

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from lumiku.accounts.service import User
    from lumiku.db.store import Tx
    from lumiku.deps import Deps
    from lumiku.jobs.models import Job, Submission


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
