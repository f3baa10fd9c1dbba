"""Submitting a job (SPEC §5.2, §6): the job row, its charge and the app's own row commit in
ONE transaction, or nothing does.

Idempotency-Key (the protocol is `jobs/idempotency.py`'s): the key is reserved before the
job transaction, which marks it `done` with the job id; when that transaction fails the key
is dropped, so the client may try again. A replay answers the key's first job.

The job transaction is one `Store.unit`: on PostgreSQL it crosses the bridge once, so the
app's `extra(tx, job)` runs inside it and may only await `tx` (no trio calls).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Final

from lumiku.credits import ledger
from lumiku.db.queries import load_queries
from lumiku.errors import DatabaseError, FieldError, IdempotencyKeyInUse, ValidationFailed
from lumiku.jobs import idempotency
from lumiku.jobs.idempotency import KEY_MAX, KEY_TTL
from lumiku.jobs.idempotency import purge as purge_idempotency_keys
from lumiku.jobs.models import REF_TYPE, Job, Progress, Submission, new_job_id

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable
    from uuid import UUID

    from lumiku.credits.ledger import CreditsPolicy
    from lumiku.db.store import Store, Tx
    from lumiku.jobs.idempotency import KeyRecord

__all__ = ["KEY_MAX", "KEY_TTL", "purge_idempotency_keys", "submit"]

Q: Final = load_queries("lumiku.jobs")


async def submit(
    store: Store,
    *,
    user_id: UUID,
    tags: Iterable[str],
    app: str,
    kind: str,
    payload: dict[str, object],
    cost: int,
    policy: CreditsPolicy,
    priority: int = 0,
    max_attempts: int = 3,
    request_id: str | None = None,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    extra: Callable[[Tx, Job], Awaitable[None]] | None = None,
) -> Submission:
    """Queue a job and charge for it in one transaction; with `extra(tx, job)` also the
    app's own row.

    Writes the job (`queued`, `run_after` now, event_seq 1 for `generation:queued`), one
    `charge` entry of `policy.cost_for(tags, app, cost)` referenced `job:<id>` (none when
    that is 0) and what `extra` writes; every instance's workers are woken on commit.
    Refuses with `InsufficientCredits` (nothing written, not even the key),
    `ValidationFailed` for a bad key, cost or attempts, `IdempotencyKeyReused` when the
    key came with another `request_hash`, and `IdempotencyKeyInUse` while the key's first
    request is still being processed. A replay (same key and hash) writes nothing and
    returns the first job with `replayed=True`.
    """
    problems = _check(cost, max_attempts, idempotency_key, request_hash)
    if problems:
        raise ValidationFailed(problems)
    amount = policy.cost_for(tags, app, cost)
    insert = partial(
        _insert_and_charge,
        store,
        user_id,
        app,
        kind,
        payload,
        amount,
        priority,
        max_attempts,
        request_id,
    )
    if idempotency_key is None:
        job = await insert(None, None, extra)
        return Submission(job, replayed=False, charged=amount)
    assert request_hash is not None
    record = await idempotency.reserve(store, user_id, idempotency_key, request_hash)
    if record is not None:
        job = await _replayed_job(store, idempotency_key, record)
        return Submission(job, replayed=True, charged=0)
    try:
        job = await insert(idempotency_key, request_hash, extra)
    except BaseException:
        # observed, not handled: the key is given up whatever stopped the job transaction
        await idempotency.drop(store, user_id, idempotency_key, request_hash)
        raise
    return Submission(job, replayed=False, charged=amount)


def _check(
    cost: int, max_attempts: int, key: str | None, request_hash: str | None
) -> list[FieldError]:
    problems = []
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < 0:
        problems.append(FieldError("cost", "must be an integer >= 0"))
    if max_attempts < 1:
        problems.append(FieldError("max_attempts", "must be at least 1"))
    if key is not None:
        if not 0 < len(key) <= KEY_MAX:
            problems.append(FieldError("Idempotency-Key", f"must be 1 to {KEY_MAX} characters"))
        if not request_hash:
            problems.append(FieldError("request_hash", "is required with an Idempotency-Key"))
    return problems


async def _replayed_job(store: Store, key: str, record: KeyRecord) -> Job:
    if record.job_id is None:
        raise IdempotencyKeyInUse()  # not a job's key
    job_row = await store.fetch_one(Q.job_by_id, record.job_id)
    if job_row is None:
        raise DatabaseError(f"idempotency key {key!r} names a missing job {record.job_id}")
    return Job.from_row(job_row)


async def _insert_and_charge(
    store: Store,
    user_id: UUID,
    app: str,
    kind: str,
    payload: dict[str, object],
    amount: int,
    priority: int,
    max_attempts: int,
    request_id: str | None,
    key: str | None,
    request_hash: str | None,
    extra: Callable[[Tx, Job], Awaitable[None]] | None,
) -> Job:
    """The job transaction, as one unit of work (one bridge crossing on PostgreSQL); a free
    job without a key or an app row is its INSERT alone (no transaction needed)."""
    insert_args = (
        new_job_id(),
        kind,
        app,
        user_id,
        priority,
        payload,
        max_attempts,
        datetime.now(UTC),
        Progress(stage="queued").as_dict(),
        amount,
        request_id,
        key,
    )
    if amount == 0 and key is None and extra is None:
        row = await store.fetch_one(Q.insert_job, *insert_args)
        assert row is not None
        return Job.from_row(row)

    async def work(tx: Tx) -> Job:
        row = await tx.fetch_one(Q.insert_job, *insert_args)
        assert row is not None
        job = Job.from_row(row)
        await ledger.charge(
            tx,
            user_id=user_id,
            amount=amount,
            ref_type=REF_TYPE,
            ref_id=job.ref_id,
            note=f"{app} {kind}",
        )
        if extra is not None:
            await extra(tx, job)
        if key is not None:
            assert request_hash is not None
            marked = await idempotency.finish(
                tx, user_id, key, request_hash, job_id=job.id, response=job.as_dict()
            )
            if not marked:
                # Taken over as abandoned while this request ran: let the other one win.
                raise IdempotencyKeyInUse()
        return job

    return await store.unit(work)
