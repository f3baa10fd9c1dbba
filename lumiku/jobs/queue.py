"""Claiming, reaping and reading jobs (SPEC §6).

`claim` hands due queued jobs to a worker: per kind at most its free slots, by priority
then age, and never more than `per_user_running` RUNNING jobs of one user across every
instance. `reap` puts running jobs whose lease expired back in the queue (or fails them
when no attempts remain). Both are safe with several instances at once: PostgreSQL rows
are taken `FOR UPDATE SKIP LOCKED`; on SQLite the single writer transaction serialises.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from lumiku.errors import FieldError, NotFound, ValidationFailed
from lumiku.jobs import transitions
from lumiku.jobs.models import (
    STALLED,
    STATUSES,
    Job,
    JobError,
    Page,
    Transition,
    backoff_s,
    decode_cursor,
    encode_cursor,
)
from lumiku.jobs.submit import Q

if TYPE_CHECKING:
    import random
    from collections.abc import Awaitable, Callable, Mapping

    from lumiku.db.store import Store, Tx

__all__ = ["MAX_PAGE", "claim", "get_job", "list_admin", "list_jobs", "reap"]

MAX_PAGE: Final = 100
REAP_BATCH: Final = 100
# Greater than every id: the first page has no cursor.
_NO_CURSOR: Final = UUID(int=2**128 - 1)


async def claim(
    store: Store,
    *,
    worker_id: str,
    slots: Mapping[str, int],
    per_user_running: int,
    lease_s: float,
    now: datetime,
) -> list[Job]:
    """Claim due jobs for `worker_id`: `slots` maps a kind to this instance's free slots.

    Writes, per claimed job: status `running`, attempt + 1, `worker_id`, a lease until
    `now + lease_s`, `started_at`, event_seq + 1 (`generation:started`). Skips jobs whose
    cancellation was requested, jobs not yet due, and users at the running cap. Returns
    the claimed jobs as they now are (possibly none).

    The per-user cap across instances: SKIP LOCKED alone would let two claimers each see
    "1 running" for a user and each start one more. So the claimer takes a
    transaction-level advisory lock per candidate user with `pg_try_advisory_xact_lock`
    and counts the users' running jobs after taking them; the locks are held until the
    commit, so the next claimer's count sees this one's claims. A try-lock never waits, so
    claimers cannot deadlock; the loser skips that user until its next poll. (Locking the
    user row instead would block profile writes and wait.)

    Three statements per kind, whatever the number of jobs: the candidates, the locks of
    their users, and one UPDATE that recounts and claims.
    """
    if per_user_running < 1:
        raise ValueError("per_user_running must be at least 1")
    lease = now + timedelta(seconds=lease_s)

    async def work(tx: Tx) -> list[Job]:  # one unit of work: one bridge crossing
        claimed: list[Job] = []
        for kind, free in slots.items():
            if free > 0:
                claimed.extend(
                    await _claim_kind(tx, kind, free, worker_id, per_user_running, lease, now)
                )
        return claimed

    return await store.unit(work)


async def _claim_kind(
    tx: Tx,
    kind: str,
    free: int,
    worker_id: str,
    per_user_running: int,
    lease: datetime,
    now: datetime,
) -> list[Job]:
    candidates = await tx.fetch_all(Q.claim_candidates, kind, now, per_user_running, free)
    if not candidates:
        return []
    users = sorted({str(row["user_id"]) for row in candidates})
    locked = [row["user_key"] for row in await tx.fetch_all(Q.lock_users, users)]
    if not locked:
        return []
    rows = await tx.fetch_all(
        Q.claim_picked,
        [str(row["id"]) for row in candidates],
        [int(row["place"]) for row in candidates],
        [str(row["user_id"]) for row in candidates],
        per_user_running,
        worker_id,
        lease,
        now,
        locked,
    )
    claimed = [Job.from_row(row) for row in rows]
    claimed.sort(key=lambda job: (-job.priority, job.id))
    return claimed


async def reap(
    store: Store,
    *,
    now: datetime,
    backoff_base_s: float,
    backoff_max_s: float,
    rng: random.Random | None = None,
    published_seq: Callable[[str], Awaitable[int]] | None = None,
) -> list[Transition]:
    """Running jobs whose lease expired by `now`: back to `queued` after an exponential
    backoff with jitter while attempts remain, else `failed` with code STALLED and the
    undelivered cost refunded (a job whose cancellation was requested ends `cancelled`).

    Each transition bumps event_seq once (`generation:retrying` / a terminal event). At
    most `REAP_BATCH` jobs per call, in one transaction; a job another reaper holds is
    skipped. Returns the transitions made.

    `published_seq(job_id)` tells the last seq the event bus holds for a job: its dead
    worker may have published progress beyond the seq stored with the row, and the reaper's
    event must come after it.
    """
    done: list[Transition] = []
    expired = await store.fetch_all(Q.expired_leases, now, REAP_BATCH)
    seen = {
        row["id"]: await published_seq(str(row["id"])) if published_seq is not None else 0
        for row in expired
    }
    async with store.transaction() as tx:
        for row in expired:
            job_id, attempt = row["id"], row["attempt"]
            job_row = await tx.fetch_one(Q.lock_running, job_id, attempt)
            if job_row is None:
                continue
            job = Job.from_row(job_row)
            if job.attempt < job.max_attempts:
                error = JobError("STALLED", "The worker stopped answering; retrying.", True)
                delay = backoff_s(job.attempt, backoff_base_s, backoff_max_s, rng)
                moved = await transitions.requeue(
                    tx,
                    job_id,
                    attempt,
                    error,
                    now + timedelta(seconds=delay),
                    count_attempt=True,
                    seen_seq=seen[job_id],
                )
            else:
                error = JobError(STALLED, "The worker stopped answering too many times.", False)
                moved = await transitions.fail_in(tx, job_id, attempt, error, seen_seq=seen[job_id])
            if moved is not None:
                done.append(moved)
    return done


async def count_queued(store: Store) -> int:
    """How many jobs wait in the queue (due or not)."""
    return int(await store.fetch_val(Q.count_queued))


async def queue_statistics(store: Store, now: datetime) -> dict[str, Any]:
    """Jobs per status and the age of the oldest queued one (for /health/detailed)."""
    counts = {status: 0 for status in STATUSES}
    for row in await store.fetch_all(Q.status_counts):
        counts[str(row["status"])] = int(row["jobs"])
    oldest = await store.fetch_val(Q.oldest_queued)
    if isinstance(oldest, str):  # SQLite: an aggregate carries no declared type
        oldest = datetime.fromisoformat(oldest.replace("Z", "+00:00"))
    age = round((now - oldest).total_seconds(), 3) if oldest is not None else None
    return {"counts": counts, "oldest_queued_age_s": age}


async def get_job(store: Store, job_id: UUID, *, user_id: UUID, is_admin: bool) -> Job:
    """The job; reads only. `NotFound` when missing or someone else's (unless admin)."""
    row = await store.fetch_one(Q.job_by_id, job_id)
    if row is None or (not is_admin and row["user_id"] != user_id):
        raise NotFound("No such job")
    return Job.from_row(row)


async def list_jobs(
    store: Store,
    user_id: UUID,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> Page:
    """The user's jobs newest first, optionally of one status and kind; reads only.
    `ValidationFailed` for a bad limit, status or cursor."""
    before = _check_page(limit, status, cursor)
    rows = await store.fetch_all(Q.user_jobs_page, user_id, before, status, kind, limit + 1)
    return _page(rows, limit)


async def list_admin(
    store: Store, *, status: str | None = None, limit: int = 20, cursor: str | None = None
) -> Page:
    """Every user's jobs newest first (`status="failed"`: the dead letters); reads only.
    `ValidationFailed` for a bad limit, status or cursor."""
    before = _check_page(limit, status, cursor)
    return _page(await store.fetch_all(Q.admin_jobs_page, before, status, limit + 1), limit)


def _check_page(limit: int, status: str | None, cursor: str | None) -> UUID:
    problems = []
    if not 1 <= limit <= MAX_PAGE:
        problems.append(FieldError("limit", f"must be between 1 and {MAX_PAGE}"))
    if status is not None and status not in STATUSES:
        problems.append(FieldError("status", f"must be one of {', '.join(STATUSES)}"))
    if problems:
        raise ValidationFailed(problems)
    return _NO_CURSOR if cursor is None else decode_cursor(cursor)


def _page(rows: list[Mapping[str, object]], limit: int) -> Page:
    jobs = tuple(Job.from_row(row) for row in rows[:limit])
    more = len(rows) > limit
    return Page(jobs, encode_cursor(jobs[-1].id) if more else None)
