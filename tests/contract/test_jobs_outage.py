"""A worker's final write during a database outage, on both backends (SPEC §5–6): the job is
left as it is, the reaper recovers it once its lease runs out, and the money stays right —
charged once, refunded at most once, never delivered twice. Also: a success after a failed
attempt keeps no stale error. Time is passed explicitly (`now`), never waited for."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Final

import pytest

from lumiku import jobs
from lumiku.db.store import Store
from lumiku.errors import Unavailable
from lumiku.jobs import JobError, Transition
from lumiku.testing import FlakyStore
from tests.contract.test_jobs import assert_audit_clean, claim_one, entries_for, later, submit
from tests.contract.test_ledger import assert_consistent, new_user

TRANSIENT: Final = JobError("TRANSIENT", "upstream 503", True)
PERMANENT: Final = JobError("PERMANENT", "content rejected", False)
COST: Final = 10

# A worker's final transitions of attempt `attempt`, as `_finish` / `_failed` write them.
FinalWrite = Callable[[Store, jobs.Job, int, datetime], Awaitable[Transition | None]]


async def _complete_batch(
    store: Store, job: jobs.Job, attempt: int, now: datetime
) -> Transition | None:
    completion = jobs.transitions.Completion(job.id, attempt, {"url": f"attempt {attempt}"})
    return (await jobs.transitions.complete_batch(store, [completion])).get(job.id)


async def _complete_refunding(
    store: Store, job: jobs.Job, attempt: int, now: datetime
) -> Transition | None:
    return await jobs.complete(store, job.id, attempt, {"url": "partial"}, refund=4)


async def _fail(store: Store, job: jobs.Job, attempt: int, now: datetime) -> Transition | None:
    return await jobs.fail(store, job.id, attempt, PERMANENT, now)


async def _retry(store: Store, job: jobs.Job, attempt: int, now: datetime) -> Transition | None:
    return await jobs.retry(store, job.id, attempt, TRANSIENT, now, count_attempt=True)


async def _cancelled(store: Store, job: jobs.Job, attempt: int, now: datetime) -> Transition | None:
    return await jobs.finish_cancelled(store, job.id, attempt, refund=COST)


FINAL_WRITES: Final = {
    "complete_batch": _complete_batch,
    "complete_refunding": _complete_refunding,
    "fail": _fail,
    "retry": _retry,
    "finish_cancelled": _cancelled,
}


async def _reap(store: Store, now: datetime) -> list[Transition]:
    return await jobs.reap(store, now=now, backoff_base_s=10, backoff_max_s=600)


@pytest.mark.parametrize("write", FINAL_WRITES)
async def test_a_final_write_that_fails_leaves_the_job_to_the_reaper(
    store: Store, write: str
) -> None:
    final: FinalWrite = FINAL_WRITES[write]
    user = await new_user(store, balance=50)
    job = (await submit(store, user, cost=COST)).job
    t0 = later()
    running = await claim_one(store, t0, worker="w1", lease_s=30)
    outage = FlakyStore(store, down=True)

    with pytest.raises(Unavailable):
        await final(outage, job, 1, t0 + timedelta(seconds=5))

    left = await jobs.get_job(store, job.id, user_id=user, is_admin=False)
    assert left == running  # untouched: still running attempt 1, nothing refunded
    assert await _reap(store, t0 + timedelta(seconds=29)) == []  # its lease still holds
    (reaped,) = await _reap(store, t0 + timedelta(seconds=31))
    assert (reaped.job.status, reaped.job.attempt, reaped.credit_refunded) == ("queued", 1, 0)
    assert reaped.job.error is not None
    assert reaped.job.error.code == "STALLED"

    again = await claim_one(store, reaped.job.run_after, worker="w2")
    assert again.attempt == 2
    # The first worker's write, tried again once the database is back, is fenced out.
    assert await final(store, job, 1, again.run_after) is None
    done = await jobs.complete(store, job.id, 2, {"url": "attempt 2"})
    assert done is not None
    assert (done.job.status, done.job.result, done.job.refunded) == (
        "succeeded",
        {"url": "attempt 2"},
        0,
    )
    assert done.job.error is None  # the STALLED of the reaped attempt is gone
    assert await entries_for(store, job) == [("charge", -COST, str(job.id))]  # charged once
    assert await assert_consistent(store, user) == 50 - COST
    await assert_audit_clean(store)


@pytest.mark.parametrize("write", ["complete_batch", "complete_refunding", "fail"])
async def test_a_final_write_whose_answer_was_lost_is_not_done_twice(
    store: Store, write: str
) -> None:
    """The write committed but the connection died before the answer: the job is finished,
    the reaper finds nothing to do and the worker's write tried again is refused."""
    final: FinalWrite = FINAL_WRITES[write]
    user = await new_user(store, balance=50)
    job = (await submit(store, user, cost=COST)).job
    t0 = later()
    await claim_one(store, t0, lease_s=30)

    with pytest.raises(Unavailable):
        await final(FlakyStore(store, lose_answers=True), job, 1, t0)

    finished = await jobs.get_job(store, job.id, user_id=user, is_admin=False)
    assert finished.status in jobs.FINISHED
    assert await _reap(store, t0 + timedelta(minutes=5)) == []
    assert await final(store, job, 1, t0) is None
    after = await jobs.get_job(store, job.id, user_id=user, is_admin=False)
    assert after == finished
    refunds = [e for e in await entries_for(store, job) if e[0] == "refund"]
    assert len(refunds) == (0 if write == "complete_batch" else 1)  # at most once
    assert await assert_consistent(store, user) == 50 - COST + finished.refunded
    await assert_audit_clean(store)


async def test_out_of_attempts_the_reaper_fails_it_with_one_refund(store: Store) -> None:
    user = await new_user(store, balance=50)
    job = (await submit(store, user, cost=COST, max_attempts=1)).job
    t0 = later()
    await claim_one(store, t0, lease_s=30)
    with pytest.raises(Unavailable):
        await _fail(FlakyStore(store, down=True), job, 1, t0)

    (reaped,) = await _reap(store, t0 + timedelta(seconds=31))
    assert (reaped.job.status, reaped.job.refunded, reaped.credit_refunded) == (
        "failed",
        COST,
        COST,
    )
    assert reaped.job.error is not None
    assert reaped.job.error.code == "STALLED"
    assert await _fail(store, job, 1, t0) is None  # the worker, back: fenced out
    assert await _reap(store, t0 + timedelta(minutes=5)) == []
    assert await entries_for(store, job) == [
        ("charge", -COST, str(job.id)),
        ("refund", COST, str(job.id)),
    ]
    assert await assert_consistent(store, user) == 50
    await assert_audit_clean(store)


@pytest.mark.parametrize("refund", [0, 3])
async def test_a_success_after_a_failed_attempt_keeps_no_error(store: Store, refund: int) -> None:
    user = await new_user(store, balance=50)
    job = (await submit(store, user, cost=COST)).job
    t0 = later()
    await claim_one(store, t0)
    moved = await jobs.retry(store, job.id, 1, TRANSIENT, t0, count_attempt=True)
    assert moved is not None
    assert moved.job.error == TRANSIENT  # kept for the client while it waits
    running = await claim_one(store, t0)
    assert running.error == TRANSIENT
    # refund 0 goes through the group commit's statement, a refund through finish_job
    done = await jobs.complete(store, job.id, 2, {"ok": True}, refund=refund)
    assert done is not None
    assert (done.job.status, done.job.error) == ("succeeded", None)
    stored = await jobs.get_job(store, job.id, user_id=user, is_admin=False)
    assert stored.error is None
    assert stored.as_dict()["error"] is None
