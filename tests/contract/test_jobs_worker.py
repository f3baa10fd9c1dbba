"""The worker side of the job queue on both backends: claiming, fencing, retries, the reaper
and admin retries. Time is passed explicitly (`now`), never waited for."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from lumiku import jobs
from lumiku.db.store import Store
from lumiku.errors import InsufficientCredits, JobFinished, NotFound
from lumiku.jobs import JobError, Progress
from tests.contract.test_jobs import (
    KIND,
    assert_audit_clean,
    claim_one,
    entries_for,
    later,
    submit,
)
from tests.contract.test_ledger import assert_consistent, new_user

TRANSIENT = JobError("TRANSIENT", "upstream 503", True)
PERMANENT = JobError("PERMANENT", "content rejected", False)


async def test_claim_takes_due_jobs_by_priority_per_kind_slot(store: Store) -> None:
    user = await new_user(store, balance=500)
    low = (await submit(store, user)).job
    high = (await submit(store, user, priority=5)).job
    pose = (await submit(store, user, kind="pose.generate")).job
    now = later()
    claimed = await jobs.claim(
        store,
        worker_id="w1",
        slots={KIND: 1, "pose.generate": 0},
        per_user_running=5,
        lease_s=30,
        now=now,
    )
    assert [j.id for j in claimed] == [high.id]
    job = claimed[0]
    assert (job.status, job.attempt, job.worker_id, job.event_seq) == ("running", 1, "w1", 2)
    assert job.lease_expires_at == now + timedelta(seconds=30)
    assert job.started_at == now
    # Not yet due: nothing.
    assert (
        await jobs.claim(
            store,
            worker_id="w1",
            slots={"pose.generate": 3},
            per_user_running=5,
            lease_s=30,
            now=pose.run_after - timedelta(seconds=1),
        )
        == []
    )
    rest = await jobs.claim(
        store,
        worker_id="w2",
        slots={KIND: 5, "pose.generate": 5},
        per_user_running=5,
        lease_s=30,
        now=now,
    )
    assert {j.id for j in rest} == {low.id, pose.id}


async def test_a_stale_worker_is_fenced_out(store: Store) -> None:
    user = await new_user(store, balance=50)
    job = (await submit(store, user)).job
    t0 = later()
    first = await claim_one(store, t0, worker="old", lease_s=30)
    assert first.attempt == 1
    assert await jobs.heartbeat(store, job.id, 1, "old", 30, t0 + timedelta(seconds=10))
    # The lease runs out; the reaper queues the job again, another worker takes it.
    t1 = t0 + timedelta(seconds=60)
    reaped = await jobs.reap(store, now=t1, backoff_base_s=10, backoff_max_s=600)
    assert [(t.job.status, t.job.attempt) for t in reaped] == [("queued", 1)]
    assert reaped[0].event_seq == 3
    assert reaped[0].job.error is not None
    second = await claim_one(store, t1 + timedelta(minutes=5), worker="new")
    assert second.attempt == 2

    # Everything the attempt-1 worker still tries is refused and changes nothing.
    assert not await jobs.heartbeat(store, job.id, 1, "old", 30, t1)
    assert not await jobs.set_progress(store, job.id, 1, Progress.of(1, 2, "render"), 9)
    assert await jobs.complete(store, job.id, 1, {"url": "zombie"}) is None
    assert await jobs.fail(store, job.id, 1, PERMANENT, t1) is None
    assert await jobs.finish_cancelled(store, job.id, 1, refund=10) is None
    assert await jobs.retry(store, job.id, 1, TRANSIENT, t1, count_attempt=True) is None
    assert not await jobs.release(store, job.id, 1)
    assert await jobs.get_job(store, job.id, user_id=user, is_admin=False) == second
    # Only the new worker's heartbeat (its own id) extends the lease.
    assert not await jobs.heartbeat(store, job.id, 2, "old", 30, t1)

    # The worker numbers its progress events; the row keeps the last seq it stored.
    seq = second.event_seq + 2
    assert await jobs.set_progress(store, job.id, 2, Progress.of(1, 2, "render"), seq)
    assert not await jobs.set_progress(store, job.id, 2, Progress.of(0, 2, "late"), seq - 1)
    # The terminal event follows the last one published, stored or not (seq + 1 was not).
    done = await jobs.complete(store, job.id, 2, {"url": "real"}, seen_seq=seq + 1)
    assert done is not None
    assert done.event_seq == seq + 2
    assert (done.job.status, done.job.result, done.job.progress.percent) == (
        "succeeded",
        {"url": "real"},
        50,
    )
    assert await jobs.complete(store, job.id, 2, {"url": "twice"}) is None
    assert await jobs.fail(store, job.id, 2, PERMANENT, t1) is None
    assert await entries_for(store, job) == [("charge", -10, str(job.id))]
    await assert_audit_clean(store)


async def test_complete_with_a_partial_refund(store: Store) -> None:
    user = await new_user(store, balance=100)
    job = (await submit(store, user, cost=90)).job
    running = await claim_one(store, later())
    with pytest.raises(ValueError, match="refund"):
        await jobs.complete(store, job.id, running.attempt, {}, refund=-1)
    done = await jobs.complete(store, job.id, running.attempt, {"poses": 2}, refund=30)
    assert done is not None
    assert (done.job.refunded, done.credit_refunded) == (30, 30)
    assert await assert_consistent(store, user) == 40
    await assert_audit_clean(store)


async def test_fail_refunds_exactly_once(store: Store) -> None:
    user = await new_user(store, balance=50)
    job = (await submit(store, user)).job
    running = await claim_one(store, later())
    first = await jobs.fail(store, job.id, running.attempt, PERMANENT, later())
    second = await jobs.fail(store, job.id, running.attempt, PERMANENT, later())
    assert first is not None
    assert second is None
    assert (first.job.status, first.job.error, first.job.refunded) == ("failed", PERMANENT, 10)
    assert first.credit_refunded == 10
    assert first.job.finished_at is not None
    assert await entries_for(store, job) == [
        ("charge", -10, str(job.id)),
        ("refund", 10, str(job.id)),
    ]
    assert await assert_consistent(store, user) == 50
    await assert_audit_clean(store)


async def test_retry_counts_attempts_unless_rate_limited(store: Store) -> None:
    user = await new_user(store, balance=50)
    job = (await submit(store, user)).job
    t0 = later()
    running = await claim_one(store, t0)
    moved = await jobs.retry(
        store, job.id, 1, TRANSIENT, t0 + timedelta(seconds=10), count_attempt=True
    )
    assert moved is not None
    assert (moved.job.status, moved.job.attempt, moved.job.error) == ("queued", 1, TRANSIENT)
    assert moved.event_seq == running.event_seq + 1
    assert moved.credit_refunded == 0
    # Not due before run_after.
    assert (
        await jobs.claim(
            store, worker_id="w", slots={KIND: 1}, per_user_running=2, lease_s=30, now=t0
        )
        == []
    )
    again = await claim_one(store, t0 + timedelta(seconds=10))
    assert again.attempt == 2
    limited = JobError("RATE_LIMITED", "slow down", True)
    moved = await jobs.retry(
        store, job.id, 2, limited, t0 + timedelta(seconds=20), count_attempt=False
    )
    assert moved is not None
    assert moved.job.attempt == 1
    third = await claim_one(store, t0 + timedelta(seconds=20))
    assert third.attempt == 2
    assert await jobs.release(store, job.id, 2)
    released = await jobs.get_job(store, job.id, user_id=user, is_admin=False)
    assert (released.status, released.attempt, released.worker_id) == ("queued", 1, None)
    assert released.event_seq == third.event_seq  # a release announces nothing
    assert await assert_consistent(store, user) == 40  # no refund for any of that
    await assert_audit_clean(store)


async def test_finish_cancelled_refunds_the_undelivered_part(store: Store) -> None:
    user = await new_user(store, balance=100)
    job = (await submit(store, user, cost=60)).job
    running = await claim_one(store, later())
    await jobs.cancel(store, job.id, user_id=user, is_admin=False)
    done = await jobs.finish_cancelled(store, job.id, running.attempt, refund=1000)
    assert done is not None
    assert (done.job.status, done.job.refunded, done.credit_refunded) == ("cancelled", 60, 60)
    again = await jobs.cancel(store, job.id, user_id=user, is_admin=False)
    assert again.immediate
    assert again.job == done.job
    partial = (await submit(store, user, cost=60)).job
    running = await claim_one(store, later())
    done = await jobs.finish_cancelled(store, partial.id, running.attempt, refund=20)
    assert done is not None
    assert done.job.refunded == 20
    assert await assert_consistent(store, user) == 60
    await assert_audit_clean(store)


async def test_the_reaper_fails_a_job_out_of_attempts_with_a_refund(store: Store) -> None:
    user = await new_user(store, balance=50)
    await submit(store, user, max_attempts=2)
    now = later()
    rng = random.Random(1)
    for attempt in (1, 2):
        running = await claim_one(store, now, lease_s=30)
        assert running.attempt == attempt
        now += timedelta(seconds=31)
        reaped = await jobs.reap(store, now=now, backoff_base_s=10, backoff_max_s=600, rng=rng)
        assert len(reaped) == 1
        if attempt == 1:
            delay = reaped[0].job.run_after - now
            assert timedelta(seconds=5) <= delay <= timedelta(seconds=10)
            now += delay
    stalled = reaped[0].job
    assert (stalled.status, stalled.error and stalled.error.code) == ("failed", "STALLED")
    assert (stalled.refunded, reaped[0].credit_refunded) == (10, 10)
    assert await jobs.reap(store, now=now, backoff_base_s=10, backoff_max_s=600) == []
    assert await assert_consistent(store, user) == 50
    await assert_audit_clean(store)


async def test_a_stalled_job_whose_cancellation_was_requested_ends_cancelled(
    store: Store,
) -> None:
    user = await new_user(store, balance=50)
    for max_attempts in (1, 2):  # out of attempts, and with attempts left
        job = (await submit(store, user, max_attempts=max_attempts)).job
        now = later()
        await claim_one(store, now, lease_s=30)
        outcome = await jobs.cancel(store, job.id, user_id=user, is_admin=False)
        assert not outcome.immediate  # running: its worker was to finish it, but it died
        (reaped,) = await jobs.reap(
            store, now=now + timedelta(seconds=31), backoff_base_s=10, backoff_max_s=600
        )
        assert (reaped.job.status, reaped.job.refunded) == ("cancelled", 10)
    assert await assert_consistent(store, user) == 50
    await assert_audit_clean(store)


async def test_the_reaper_leaves_live_leases_alone(store: Store) -> None:
    user = await new_user(store, balance=50)
    await submit(store, user)
    now = later()
    running = await claim_one(store, now, lease_s=30)
    assert (
        await jobs.reap(store, now=now + timedelta(seconds=29), backoff_base_s=1, backoff_max_s=1)
        == []
    )
    assert await jobs.heartbeat(store, running.id, 1, "w1", 30, now + timedelta(seconds=29))
    assert (
        await jobs.reap(store, now=now + timedelta(seconds=45), backoff_base_s=1, backoff_max_s=1)
        == []
    )


async def test_admin_retry_charges_again(store: Store) -> None:
    user = await new_user(store, balance=25)
    job = (await submit(store, user)).job
    running = await claim_one(store, later())
    with pytest.raises(JobFinished):
        await jobs.admin_retry(store, job.id)
    await jobs.fail(store, job.id, running.attempt, PERMANENT, later())
    moved = await jobs.admin_retry(store, job.id)
    assert (moved.job.status, moved.job.attempt, moved.job.charges) == ("queued", 0, 2)
    assert (moved.job.refunded, moved.job.error) == (0, None)
    assert await assert_consistent(store, user) == 15
    await assert_audit_clean(store)
    # It fails again: the second round is refunded under its own reference.
    running = await claim_one(store, later())
    assert running.attempt == 1
    await jobs.fail(store, job.id, 1, PERMANENT, later())
    assert await entries_for(store, job) == [
        ("charge", -10, str(job.id)),
        ("refund", 10, str(job.id)),
        ("charge", -10, f"{job.id}/2"),
        ("refund", 10, f"{job.id}/2"),
    ]
    await assert_audit_clean(store)
    with pytest.raises(NotFound):
        await jobs.admin_retry(store, jobs.new_job_id())


async def test_admin_retry_refuses_a_broke_user(store: Store) -> None:
    user = await new_user(store, balance=10)
    job = (await submit(store, user)).job
    running = await claim_one(store, later())
    done = await jobs.complete(store, job.id, running.attempt, {}, refund=0)
    assert done is not None
    other = (await submit(store, await new_user(store, balance=10))).job
    running = await claim_one(store, later())
    await jobs.fail(store, other.id, running.attempt, PERMANENT, later())
    # Spend the refund, so the retry cannot be paid.
    await submit(store, other.user_id)
    with pytest.raises(InsufficientCredits):
        await jobs.admin_retry(store, other.id)
    unchanged = await jobs.get_job(store, other.id, user_id=other.user_id, is_admin=False)
    assert (unchanged.status, unchanged.charges) == ("failed", 1)
    await assert_audit_clean(store)


async def test_the_reaper_numbers_its_event_after_what_the_dead_worker_published(
    store: Store,
) -> None:
    user = await new_user(store, balance=50)
    job = (await submit(store, user)).job
    t0 = later()
    claimed = await claim_one(store, t0, worker="dead", lease_s=30)
    # The worker published progress up to seq +3 but stored none of it before dying.
    published = claimed.event_seq + 3
    asked: list[str] = []

    async def published_seq(job_id: str) -> int:
        asked.append(job_id)
        return published

    reaped = await jobs.reap(
        store,
        now=t0 + timedelta(seconds=60),
        backoff_base_s=10,
        backoff_max_s=600,
        published_seq=published_seq,
    )
    assert asked == [str(job.id)]
    assert [t.event_seq for t in reaped] == [published + 1]
    again = await claim_one(store, t0 + timedelta(minutes=30), worker="next")
    assert again.event_seq == published + 2  # its generation:started


async def test_a_final_transition_stores_the_unsaved_progress(store: Store) -> None:
    user = await new_user(store, balance=50)
    await submit(store, user)
    claimed = await claim_one(store, later(), worker="w")
    done = await jobs.complete(
        store,
        claimed.id,
        claimed.attempt,
        {"ok": True},
        seen_seq=claimed.event_seq + 1,
        progress=Progress.of(2, 2, "done"),
    )
    assert done is not None
    assert (done.job.progress.percent, done.job.progress.stage) == (100, "done")


async def test_one_statement_renews_every_lease_and_reports_the_lost_ones(store: Store) -> None:
    from tests.contract.test_jobs import JQ

    user = await new_user(store, balance=100)
    for _ in range(3):
        await submit(store, user)
    now = later()
    kept, stolen, flagged = await jobs.claim(
        store, worker_id="w1", slots={KIND: 3}, per_user_running=5, lease_s=30, now=now
    )
    await store.execute(JQ.steal_job, stolen.id)
    await store.execute(JQ.flag_cancel_quietly, flagged.id)
    renewed = await jobs.transitions.renew_leases(
        store,
        [(kept.id, kept.attempt), (stolen.id, stolen.attempt), (flagged.id, flagged.attempt)],
        "w1",
        30,
        now + timedelta(seconds=10),
    )
    assert renewed == {kept.id: False, flagged.id: True}
    for job, lease in ((kept, 40), (flagged, 40), (stolen, 30)):
        stored = await jobs.get_job(store, job.id, user_id=user, is_admin=False)
        assert stored.lease_expires_at == now + timedelta(seconds=lease)
    # Another worker id never renews them.
    assert await jobs.transitions.renew_leases(store, [(kept.id, 1)], "w2", 30, now) == {}
    assert await jobs.transitions.renew_leases(store, [], "w1", 30, now) == {}
