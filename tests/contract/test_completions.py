"""Group commit of successes on both backends: `transitions.complete_batch` (one fenced
statement for many jobs) and the workers' batcher `Completions` built on it."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from lumiku import jobs
from lumiku.db.store import Store
from lumiku.errors import DatabaseError
from lumiku.jobs import Progress
from lumiku.jobs.completions import Completions
from lumiku.jobs.transitions import Completion, complete_batch
from tests.contract.test_jobs import KIND, assert_audit_clean, entries_for, later, submit
from tests.contract.test_ledger import assert_consistent, new_user


async def claim_all(store: Store, count: int) -> list[jobs.Job]:
    claimed = await jobs.claim(
        store, worker_id="w1", slots={KIND: count}, per_user_running=count, lease_s=30, now=later()
    )
    assert len(claimed) == count
    return claimed


async def test_one_statement_completes_many_and_fences_each(store: Store) -> None:
    user = await new_user(store, balance=100)
    for _ in range(4):
        await submit(store, user)
    first, second, third, fourth = await claim_all(store, 4)
    await jobs.cancel(
        store, fourth.id, user_id=user, is_admin=False
    )  # its worker has not seen it yet
    progress = Progress.of(3, 4, "drawing")
    done = await complete_batch(
        store,
        [
            Completion(first.id, first.attempt, {"n": 1}, seen_seq=5, progress=progress),
            Completion(second.id, second.attempt, {"n": 2}),
            Completion(third.id, third.attempt + 1, {"n": 3}),  # a stale attempt: fenced
            Completion(fourth.id, fourth.attempt, {"n": 4}),  # still running: completes
        ],
    )
    assert set(done) == {first.id, second.id, fourth.id}
    one, two = done[first.id].job, done[second.id].job
    assert (one.status, one.result, one.event_seq) == ("succeeded", {"n": 1}, 6)
    assert one.progress == progress
    assert one.finished_at is not None
    assert one.lease_expires_at is None
    assert (two.status, two.result, two.event_seq) == ("succeeded", {"n": 2}, first.event_seq + 1)
    assert two.progress == second.progress  # null keeps the stored progress
    assert done[first.id].event_seq == one.event_seq
    again = await jobs.get_job(store, third.id, user_id=user, is_admin=False)
    assert (again.status, again.result) == ("running", None)
    # A second write of the same successes finds no running job: nothing twice.
    assert await complete_batch(store, [Completion(first.id, first.attempt, {"n": 9})]) == {}
    assert (await jobs.get_job(store, first.id, user_id=user, is_admin=False)).result == {"n": 1}
    assert await entries_for(store, one) == [("charge", -10, str(one.id))]
    assert await assert_consistent(store, user) == 60  # no refund on success
    with pytest.raises(ValueError, match="once per batch"):
        await complete_batch(store, [Completion(third.id, 1, {}), Completion(third.id, 1, {})])


class CountingStore:
    """The store, counting the statements that went through `fetch_all`."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.batches: list[int] = []

    async def fetch_all(self, query: Any, *args: Any) -> Any:
        if "jsonb_to_recordset" in str(query) or "json_each" in str(query):
            self.batches.append(len(args[0]))
        return await self._store.fetch_all(query, *args)


async def test_completions_written_together_while_a_write_is_in_flight(store: Store) -> None:
    user = await new_user(store, balance=500)
    for _ in range(20):
        await submit(store, user)
    running = await claim_all(store, 20)
    counting = CountingStore(store)
    batcher = Completions(counting, max_batch=8)  # type: ignore[arg-type]
    answers: dict[Any, Any] = {}

    async def finish(job: jobs.Job) -> None:
        attempt = job.attempt if job is not running[-1] else job.attempt + 1  # one is fenced
        answers[job.id] = await batcher.complete(Completion(job.id, attempt, {"ok": True}))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(batcher.serve)
            async with trio.open_nursery() as finishing:
                for job in running:
                    finishing.start_soon(finish, job)
            nursery.cancel_scope.cancel()
    # All 20 were waiting before the first write: batches of at most 8, far fewer than 20.
    assert counting.batches == [8, 8, 4]
    assert answers[running[-1].id] is None
    for job in running[:-1]:
        answer = answers[job.id]
        assert (answer.job.id, answer.job.status) == (job.id, "succeeded")
    assert [
        (await jobs.get_job(store, j.id, user_id=user, is_admin=False)).status for j in running
    ].count("succeeded") == 19
    await assert_audit_clean(store)


async def test_a_failed_write_reaches_every_job_in_it(store: Store) -> None:
    class BrokenStore:
        async def fetch_all(self, query: Any, *args: Any) -> Any:
            raise DatabaseError("connection lost")

    batcher = Completions(BrokenStore())  # type: ignore[arg-type]
    user = await new_user(store, balance=100)
    job = (await submit(store, user)).job
    errors: list[BaseException] = []

    async def finish(attempt: int) -> None:
        try:
            await batcher.complete(Completion(job.id, attempt, {}))
        except DatabaseError as exc:
            errors.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(batcher.serve)
            async with trio.open_nursery() as finishing:
                finishing.start_soon(finish, 1)
            nursery.cancel_scope.cancel()
    assert [str(e) for e in errors] == ["connection lost"]
