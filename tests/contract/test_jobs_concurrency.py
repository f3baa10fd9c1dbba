"""The job queue under real concurrency on both backends: every task runs its own
transactions (separate pooled connections on PostgreSQL; the single writer on SQLite)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from uuid import UUID

import trio

from lumiku import jobs
from lumiku.db.store import Store
from lumiku.errors import IdempotencyKeyInUse, InsufficientCredits
from lumiku.jobs import Job, JobError
from tests.contract.test_jobs import JQ, KIND, assert_audit_clean, later, submit
from tests.contract.test_ledger import assert_consistent, new_user


async def test_500_concurrent_submissions_never_overdraw(store: Store) -> None:
    users = [await new_user(store, balance=60) for _ in range(5)]
    accepted: list[Job] = []
    refused: list[tuple[UUID, InsufficientCredits]] = []

    async def one(user: UUID) -> None:
        try:
            accepted.append((await submit(store, user, cost=10)).job)
        except InsufficientCredits as exc:
            refused.append((user, exc))

    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            for number in range(500):
                nursery.start_soon(one, users[number % 5])

    assert len(accepted) == 30
    assert len(refused) == 470
    assert Counter(j.user_id for j in accepted) == dict.fromkeys(users, 6)
    assert all(exc.extra["available"] < 10 for _, exc in refused)
    for user in users:
        assert await assert_consistent(store, user) == 0
        assert await store.fetch_val(JQ.count_jobs_of, user) == 6
        assert await store.fetch_val(JQ.count_entries_of, user, "charge") == 6
    for job in accepted:
        rows = await store.fetch_all(JQ.entries_for_job, str(job.id))
        assert [(r["kind"], r["delta"]) for r in rows] == [("charge", -10)]
    await assert_audit_clean(store)


async def test_two_instances_never_exceed_the_per_user_cap(store: Store) -> None:
    busy = await new_user(store, balance=1000)
    others = [await new_user(store, balance=1000) for _ in range(2)]
    for _ in range(10):
        await submit(store, busy, priority=1)  # first in line every time
    for user in others:
        for _ in range(3):
            await submit(store, user)
    now = later()
    finished: set[UUID] = set()
    others_claimed = 0
    with trio.fail_after(120):
        for _ in range(40):
            claims: list[list[Job]] = [[], []]

            async def instance(index: int, claims: list[list[Job]] = claims) -> None:
                claims[index] = await jobs.claim(
                    store,
                    worker_id=f"i{index}",
                    slots={KIND: 3},
                    per_user_running=2,
                    lease_s=30,
                    now=now,
                )

            async with trio.open_nursery() as nursery:
                nursery.start_soon(instance, 0)
                nursery.start_soon(instance, 1)
            ids = [j.id for c in claims for j in c]
            assert len(ids) == len(set(ids))
            running = {
                r["user_id"]: r["running"] for r in await store.fetch_all(JQ.running_per_user)
            }
            assert all(count <= 2 for count in running.values()), running
            others_claimed += sum(1 for c in claims for j in c if j.user_id != busy)
            # Finish what runs, one job per user per round, so the cap keeps biting.
            for job in [j for c in claims for j in c]:
                done = await jobs.complete(store, job.id, job.attempt, {"ok": True})
                assert done is not None
                finished.add(job.id)
            if len(finished) == 16:
                break
    assert len(finished) == 16
    assert others_claimed == 6
    await assert_audit_clean(store)


async def test_concurrent_duplicates_make_one_job(store: Store) -> None:
    user = await new_user(store, balance=100)
    outcomes: list[str] = []
    job_ids: set[UUID] = set()

    async def one() -> None:
        try:
            done = await submit(store, user, idempotency_key="same", request_hash="h")
        except IdempotencyKeyInUse:
            outcomes.append("in use")
        else:
            outcomes.append("replay" if done.replayed else "new")
            job_ids.add(done.job.id)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(30):
                nursery.start_soon(one)
    assert outcomes.count("new") == 1
    assert len(outcomes) == 30
    assert len(job_ids) == 1
    assert await store.fetch_val(JQ.count_jobs_of, user) == 1
    assert await assert_consistent(store, user) == 90
    await assert_audit_clean(store)


async def test_concurrent_fails_and_reapers_refund_once(store: Store) -> None:
    user = await new_user(store, balance=100)
    jobs_ = [(await submit(store, user, max_attempts=1)).job for _ in range(5)]
    now = later()
    claimed = await jobs.claim(
        store, worker_id="w", slots={KIND: 5}, per_user_running=5, lease_s=30, now=now
    )
    assert len(claimed) == 5
    expired = now + timedelta(seconds=31)
    error = JobError("PERMANENT", "no", False)
    results: list[object] = []

    async def fail(job: Job) -> None:
        results.append(await jobs.fail(store, job.id, job.attempt, error, expired))

    async def reaper() -> None:
        results.extend(await jobs.reap(store, now=expired, backoff_base_s=1, backoff_max_s=1))

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for job in claimed:
                nursery.start_soon(fail, job)
                nursery.start_soon(fail, job)
            for _ in range(3):
                nursery.start_soon(reaper)
    transitions = [r for r in results if r is not None]
    assert len(transitions) == 5
    for job in jobs_:
        rows = await store.fetch_all(JQ.entries_for_job, str(job.id))
        assert [r["kind"] for r in rows] == ["charge", "refund"]
    assert await assert_consistent(store, user) == 100
    await assert_audit_clean(store)
