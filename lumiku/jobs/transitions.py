"""State changes of a job after it was queued (SPEC §5.4, §6).

Worker writes are FENCED: each is conditional on `(id, attempt, status = 'running')` and
returns None / False, writing nothing, when the fence fails, so a worker whose lease was
lost (and whose job was reaped and claimed again) can never overwrite the job, complete it
twice or refund twice. Terminal transitions refund in the same transaction, through the
ledger reference of the current round (`job:<id>`, `job:<id>/<n>` after admin retries),
which the ledger's UNIQUE index makes exactly-once.

A job whose cancellation was requested never goes back to `queued`: a retry, release or
reap of it ends it `cancelled` with the undelivered cost refunded.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

import attrs

from lumiku.credits import ledger
from lumiku.db.queries import load_queries
from lumiku.errors import JobFinished, NotFound
from lumiku.jobs.models import (
    CANCELLED,
    FAILED,
    QUEUED,
    REF_TYPE,
    RUNNING,
    SUCCEEDED,
    CancelOutcome,
    Job,
    JobError,
    Progress,
    Transition,
)
from lumiku.jobs.signals import cancel_everywhere, wake_everywhere

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lumiku.db.store import Store, Tx

__all__ = [
    "Completion",
    "admin_retry",
    "cancel",
    "complete",
    "complete_batch",
    "fail",
    "finish_cancelled",
    "heartbeat",
    "release",
    "renew_leases",
    "retry",
    "save_progress",
    "set_progress",
]

Q: Final = load_queries("lumiku.jobs")


async def heartbeat(
    store: Store, job_id: UUID, attempt: int, worker_id: str, lease_s: float, now: datetime
) -> bool:
    """Extend the lease to `now + lease_s`; False (nothing written) when the fence fails or
    another worker holds the job."""
    lease = now + timedelta(seconds=lease_s)
    return bool(await store.execute(Q.heartbeat, job_id, attempt, worker_id, lease, now))


async def renew_leases(
    store: Store,
    running: Sequence[tuple[UUID, int]],
    worker_id: str,
    lease_s: float,
    now: datetime,
) -> dict[UUID, bool]:
    """Extend to `now + lease_s` the leases of the `(job_id, attempt)` running on
    `worker_id`, in one statement. Answers, for each job renewed, whether a cancellation was
    requested; a job missing from the answer failed its fence (it is no longer ours)."""
    if not running:
        return {}
    lease = now + timedelta(seconds=lease_s)
    ids = [{"id": str(job_id), "attempt": attempt} for job_id, attempt in running]
    rows = await store.fetch_all(Q.renew_leases, ids, worker_id, lease, now)
    return {UUID(str(row["id"])): bool(row["cancel_requested"]) for row in rows}


async def set_progress(
    store: Store, job_id: UUID, attempt: int, progress: Progress, seq: int
) -> bool:
    """Store `progress` and `seq`, the last event seq its worker published (the worker
    numbers its progress events and writes the row at most every `PROGRESS_WRITE_S`).
    False (nothing written) when the fence fails."""
    now = datetime.now(UTC)
    return bool(await store.execute(Q.set_progress, job_id, attempt, progress.as_dict(), now, seq))


async def save_progress(store: Store, reports: Sequence[tuple[UUID, int, Progress, int]]) -> None:
    """`set_progress` for many running jobs at once: `(job_id, attempt, progress, seq)`
    each, in one batch; a report whose fence fails writes nothing."""
    now = datetime.now(UTC)
    rows = [(job_id, attempt, p.as_dict(), now, seq) for job_id, attempt, p, seq in reports]
    await store.execute_many(Q.set_progress, rows)


async def complete(
    store: Store,
    job_id: UUID,
    attempt: int,
    result: Any,
    *,
    refund: int = 0,
    seen_seq: int = 0,
    progress: Progress | None = None,
) -> Transition | None:
    """`succeeded` with `result`; `refund` (capped at what is left) goes back for work not
    delivered, in the same transaction. None when the fence fails.

    Every worker transition takes `seen_seq`, the last seq its worker published (its
    terminal event comes after it), and `progress`, its latest report if not yet stored."""
    _check_refund(refund)
    if refund == 0:  # nothing for the ledger: one fenced statement, no transaction
        completion = Completion(job_id, attempt, result, seen_seq, progress)
        return (await complete_batch(store, [completion])).get(job_id)
    return await store.unit(
        _finish_running,
        job_id,
        attempt,
        SUCCEEDED,
        {"result": result, "refund": refund, "seen_seq": seen_seq, "progress": progress},
    )


@attrs.frozen
class Completion:
    """One job's success with nothing to refund, as `complete_batch` writes it."""

    job_id: UUID
    attempt: int
    result: Any
    seen_seq: int = 0
    progress: Progress | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": str(self.job_id),
            "attempt": self.attempt,
            "result": self.result,
            "seen_seq": self.seen_seq,
            "progress": None if self.progress is None else self.progress.as_dict(),
        }


async def complete_batch(store: Store, completions: Sequence[Completion]) -> dict[UUID, Transition]:
    """`complete` (nothing to refund) for many jobs in ONE fenced statement: the workers'
    group commit. Answers the transitions written, by job id; a job missing from the answer
    failed its fence and nothing was written for it. One entry per job id."""
    if len({c.job_id for c in completions}) != len(completions):
        raise ValueError("a job may be completed once per batch")
    rows = await store.fetch_all(
        Q.complete_running_batch, [c.as_json() for c in completions], datetime.now(UTC)
    )
    jobs = [Job.from_row(row) for row in rows]
    return {job.id: Transition(job, job.event_seq) for job in jobs}


async def fail(
    store: Store,
    job_id: UUID,
    attempt: int,
    error: JobError,
    now: datetime,
    *,
    seen_seq: int = 0,
    progress: Progress | None = None,
) -> Transition | None:
    """`failed` with `error` and the whole undelivered cost refunded, in one transaction.
    None when the fence fails (also when called twice: the second finds no running job)."""
    return await store.unit(
        _finish_running,
        job_id,
        attempt,
        FAILED,
        {"error": error, "refund": None, "now": now, "seen_seq": seen_seq, "progress": progress},
    )


async def finish_cancelled(
    store: Store,
    job_id: UUID,
    attempt: int,
    *,
    refund: int,
    seen_seq: int = 0,
    progress: Progress | None = None,
) -> Transition | None:
    """`cancelled`, refunding `refund` (capped at what is left) for the undelivered work.
    None when the fence fails."""
    _check_refund(refund)
    return await store.unit(
        _finish_running,
        job_id,
        attempt,
        CANCELLED,
        {"refund": refund, "seen_seq": seen_seq, "progress": progress},
    )


async def retry(
    store: Store,
    job_id: UUID,
    attempt: int,
    error: JobError,
    run_after: datetime,
    *,
    count_attempt: bool,
    seen_seq: int = 0,
) -> Transition | None:
    """Back to `queued` until `run_after`, with `error` kept for the client; no refund.
    `count_attempt=False` (RATE_LIMITED) gives the attempt back. The caller decides whether
    attempts remain. A job whose cancellation was requested ends `cancelled` instead (full
    refund). None when the fence fails."""

    async def work(tx: Tx) -> Transition | None:
        return await requeue(
            tx, job_id, attempt, error, run_after, count_attempt=count_attempt, seen_seq=seen_seq
        )

    return await store.unit(work)


async def release(store: Store, job_id: UUID, attempt: int, *, seen_seq: int = 0) -> bool:
    """Shutdown: back to `queued` at once, the attempt given back, no error, no refund, no
    event. False when the fence fails."""

    async def work(tx: Tx) -> bool:
        now = datetime.now(UTC)
        done = await requeue(
            tx, job_id, attempt, None, now, count_attempt=False, announce=False, seen_seq=seen_seq
        )
        if done is not None:
            await wake_everywhere(tx)  # another instance may take it now
        return done is not None

    return await store.unit(work)


async def requeue(
    tx: Tx,
    job_id: UUID,
    attempt: int,
    error: JobError | None,
    run_after: datetime,
    *,
    count_attempt: bool,
    announce: bool = True,
    seen_seq: int = 0,
) -> Transition | None:
    """`retry` inside the caller's transaction (the reaper's)."""
    job = await _lock_running(tx, job_id, attempt)
    if job is None:
        return None
    if job.cancel_requested:
        return await _finish(tx, job, CANCELLED, refund=job.undelivered, seen_seq=seen_seq)
    row = await tx.fetch_one(
        Q.requeue_job,
        job_id,
        attempt,
        run_after,
        int(count_attempt),
        None if error is None else error.as_dict(),
        max(job.event_seq, seen_seq) + int(announce),
        datetime.now(UTC),
    )
    assert row is not None
    moved = Job.from_row(row)
    return Transition(moved, moved.event_seq)


async def fail_in(
    tx: Tx, job_id: UUID, attempt: int, error: JobError, *, seen_seq: int = 0
) -> Transition | None:
    """`fail` inside the caller's transaction (the reaper's); a job whose cancellation was
    requested ends `cancelled` instead (the same refund)."""
    job = await _lock_running(tx, job_id, attempt)
    if job is None:
        return None
    if job.cancel_requested:
        return await _finish(tx, job, CANCELLED, refund=job.undelivered, seen_seq=seen_seq)
    return await _finish(tx, job, FAILED, error=error, refund=job.undelivered, seen_seq=seen_seq)


async def cancel(store: Store, job_id: UUID, *, user_id: UUID, is_admin: bool) -> CancelOutcome:
    """Cancel a job of `user_id` (any job for an admin).

    Queued: `cancelled` and the full cost refunded, in one transaction (`immediate`).
    Running: `cancel_requested` is set and the instance running it is signalled on commit;
    its worker finishes it (not `immediate`); asking again returns the same outcome.
    Already cancelled: the same outcome again. Refuses with `NotFound` for a missing or
    someone else's job and `JobFinished` (409, carrying the job) for a succeeded or failed
    one.
    """
    async with store.transaction() as tx:
        row = await tx.fetch_one(Q.lock_job, job_id)
        if row is None or (not is_admin and row["user_id"] != user_id):
            raise NotFound("No such job")
        job = Job.from_row(row)
        if job.status == QUEUED:
            done = await _finish(tx, job, CANCELLED, refund=job.undelivered)
            return CancelOutcome(done.job, immediate=True)
        if job.status == RUNNING:
            if not job.cancel_requested:
                row = await tx.fetch_one(Q.request_cancel, job_id, datetime.now(UTC))
                assert row is not None
                job = Job.from_row(row)
            await cancel_everywhere(tx, job_id)  # again when asked again: signals can be lost
            return CancelOutcome(job, immediate=False)
        if job.status == CANCELLED:
            return CancelOutcome(job, immediate=True, changed=False)
    raise JobFinished(job)


async def admin_retry(store: Store, job_id: UUID) -> Transition:
    """Queue a `failed` job again with attempt 0, charging its user `job.cost` again in the
    same transaction (reference `job:<id>/<n>`, `charges` + 1).

    The price is the one the job was charged (0 stays 0), so that the job's charge entries
    always sum to `cost × charges`. Refuses with `NotFound`, `JobFinished` (409) for a job
    that is not `failed`, and `InsufficientCredits` (nothing written) when the user cannot
    pay.
    """
    async with store.transaction() as tx:
        row = await tx.fetch_one(Q.lock_job, job_id)
        if row is None:
            raise NotFound("No such job")
        job = Job.from_row(row)
        if job.status != FAILED:
            raise JobFinished(job, "Only a failed job can be retried")
        row = await tx.fetch_one(
            Q.requeue_for_admin, job_id, datetime.now(UTC), Progress(stage="queued").as_dict()
        )
        assert row is not None
        queued = Job.from_row(row)
        await ledger.charge(
            tx,
            user_id=queued.user_id,
            amount=queued.cost,
            ref_type=REF_TYPE,
            ref_id=queued.ref_id,
            note=f"{queued.app} {queued.kind} (admin retry)",
        )
        await wake_everywhere(tx)
    return Transition(queued, queued.event_seq)


async def _finish_running(
    tx: Tx, job_id: UUID, attempt: int, status: str, options: dict[str, Any]
) -> Transition | None:
    """Lock the running attempt and finish it `status` (a unit of work); `options` go to
    `_finish`, a `refund` of None meaning all that is left."""
    job = await _lock_running(tx, job_id, attempt)
    if job is None:
        return None
    if options.get("refund", 0) is None:
        options = {**options, "refund": job.undelivered}
    return await _finish(tx, job, status, **options)


async def _lock_running(tx: Tx, job_id: UUID, attempt: int) -> Job | None:
    row = await tx.fetch_one(Q.lock_running, job_id, attempt)
    return None if row is None else Job.from_row(row)


async def _finish(
    tx: Tx,
    job: Job,
    status: str,
    *,
    result: Any = None,
    error: JobError | None = None,
    refund: int = 0,
    now: datetime | None = None,
    seen_seq: int = 0,
    progress: Progress | None = None,
) -> Transition:
    amount = min(refund, job.undelivered)
    row = await tx.fetch_one(
        Q.finish_job,
        job.id,
        job.attempt,
        status,
        result,
        None if error is None else error.as_dict(),
        amount,
        now or datetime.now(UTC),
        max(job.event_seq, seen_seq) + 1,
        None if progress is None else progress.as_dict(),
    )
    assert row is not None
    done = Job.from_row(row)
    entry = await ledger.refund(
        tx,
        user_id=done.user_id,
        amount=amount,
        ref_type=REF_TYPE,
        ref_id=done.ref_id,
        note=f"{done.app} {done.kind} {status}",
    )
    return Transition(done, done.event_seq, 0 if entry is None else amount)


def _check_refund(refund: int) -> None:
    if isinstance(refund, bool) or not isinstance(refund, int) or refund < 0:
        raise ValueError(f"refund must be an integer >= 0, not {refund!r}")
