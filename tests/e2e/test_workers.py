"""The embedded workers on SQLite with autojump_clock: retries, error classes, refunds,
shutdown release, and one terminal event per job."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from lumiku import jobs
from lumiku.accounts.service import create_user
from lumiku.apps.registry import App, Registry
from lumiku.credits import ledger
from lumiku.credits.ledger import CreditsPolicy
from lumiku.deps import Deps
from lumiku.errors import Permanent, ProviderUnavailable, RateLimitedUpstream, Transient
from lumiku.events import TERMINAL, Event
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from lumiku.jobs.worker import Workers, serve_workers, trio_clock
from lumiku.supervisor import open_deps
from lumiku.systemd import Beacon
from tests.e2e.harness import STRONG_PASSWORD, make_settings

COST = 10
CHATTY = 50


@attrs.define
class Script:
    """What the test kind does on each attempt, and what it saw."""

    calls: list[tuple[float, int]] = attrs.field(factory=list)

    async def __call__(self, ctx: JobContext) -> Outcome:
        plan: list[str] = list(ctx.payload["plan"])
        self.calls.append((trio.current_time(), ctx.attempt))
        step = plan[min(len(self.calls), len(plan)) - 1]
        await ctx.progress(1, 2, "working")
        if step == "transient":
            raise Transient("upstream 503")
        if step == "permanent":
            raise Permanent("content rejected")
        if step == "rate_limited":
            raise RateLimitedUpstream("slow down", retry_after_s=30)
        if step == "loading":
            raise Transient("model loading", retry_after_s=45)
        if step == "breaker_open":
            raise ProviderUnavailable("breaker open", retry_after_s=20)
        if step == "hang":
            await trio.sleep_forever()
        if step == "chatty":  # 50 reports over 2.5 s
            for done in range(1, CHATTY + 1):
                await trio.sleep(0.05)
                await ctx.progress(done, CHATTY, "chatting")
        return Outcome({"done": True, "attempt": ctx.attempt})


@attrs.define
class World:
    deps: Deps
    workers: Workers
    script: Script
    user_id: Any
    received: list[Event]

    async def submit(self, plan: list[str]) -> jobs.Job:
        submission = await jobs.submit(
            self.deps.store,
            user_id=self.user_id,
            tags=(),
            app="demo",
            kind="demo.script",
            payload={"plan": plan},
            cost=COST,
            policy=CreditsPolicy.from_settings(self.deps.settings.credits),
        )
        self.workers.wake()
        return submission.job

    async def until_finished(self, job: jobs.Job) -> jobs.Job:
        with trio.fail_after(3600):
            while True:
                current = await jobs.get_job(
                    self.deps.store, job.id, user_id=self.user_id, is_admin=False
                )
                if current.status in jobs.FINISHED:
                    return current
                await trio.sleep(0.5)

    async def balance(self) -> int:
        return await ledger.balance(self.deps.store, self.user_id)


async def collect_events(deps: Deps, user_id: Any, into: list[Event]) -> None:
    """Append every event of `user_id` to `into`, until cancelled."""
    async with deps.events.subscribe_user(str(user_id)) as subscription:
        while True:
            into.append(await subscription.receive())


@contextlib.asynccontextmanager
async def world(
    tmp_path: Path, available: Callable[[Deps], bool] | None = None
) -> AsyncIterator[World]:
    script = Script()
    kind = JobKind("demo.script", script, concurrency=2, timeout_s=60, available=available)
    registry = Registry([App("demo", "Demo", kinds=(kind,))])
    settings = make_settings(tmp_path, {"LUMIKU_JOBS_BACKOFF_S": "10"})
    async with open_deps(settings, apps=registry) as deps, trio.open_nursery() as nursery:
        user = await create_user(deps, email="w@example.com", password=STRONG_PASSWORD, credits=100)
        received: list[Event] = []
        nursery.start_soon(collect_events, deps, user.id, received)
        workers = await nursery.start(
            partial(serve_workers, deps, Beacon("workers"), clock=trio_clock())
        )
        yield World(deps, workers, script, user.id, received)
        deps.shutdown.request("test finished")
        with trio.fail_after(60):
            await workers.drained.wait()
        nursery.cancel_scope.cancel()


@pytest.fixture
def thread_safe_autojump() -> trio.testing.MockClock:
    """An autojump clock that jumps only after 50 ms of real idleness: with threshold 0 it
    would also jump while every task waits on a worker thread (each SQLite statement), firing
    timeouts in the middle of a query."""
    return trio.testing.MockClock(autojump_threshold=0.05)


def terminal_events(received: list[Event], job: jobs.Job) -> list[Event]:
    return [e for e in received if e.job_id == str(job.id) and e.type in TERMINAL]


async def test_transient_twice_then_success(
    tmp_path: Path, thread_safe_autojump: trio.testing.MockClock
) -> None:
    async with world(tmp_path) as w:
        job = await w.submit(["transient", "transient", "ok"])
        done = await w.until_finished(job)
        assert (done.status, done.attempt, done.refunded) == ("succeeded", 3, 0)
        assert done.result == {"done": True, "attempt": 3}
        assert await w.balance() == 100 - COST
        first, second, third = (t for t, _attempt in w.script.calls)
        # exponential backoff from jobs.backoff_s (10 s) with equal jitter: the first retry
        # waits 5-10 s, the second 10-20 s (plus up to one poll interval)
        assert 5 <= second - first <= 11
        assert 10 <= third - second <= 21
        await trio.sleep(1)
        events = [e for e in w.received if e.job_id == str(job.id)]
        counted = w.deps.jobs.metrics.snapshot()["demo.script"]
    assert counted["retries"] == {"TRANSIENT": 2}
    assert counted["finished"] == {"succeeded": 1}
    assert counted["wait"]["count"] == 3  # claimed three times
    assert counted["run"]["count"] == 1  # the run that ended it
    assert [e.seq for e in events] == sorted(e.seq for e in events)
    assert [e.type for e in terminal_events(events, job)] == ["generation:completed"]
    assert [e.type for e in events].count("generation:retrying") == 2


async def test_permanent_fails_at_once_with_one_refund(
    tmp_path: Path, thread_safe_autojump: trio.testing.MockClock
) -> None:
    async with world(tmp_path) as w:
        job = await w.submit(["permanent"])
        done = await w.until_finished(job)
        assert (done.status, done.attempt, done.refunded) == ("failed", 1, COST)
        assert done.error is not None
        assert done.error.code == "PERMANENT"
        assert await w.balance() == 100
        history = await ledger.history(w.deps.store, w.user_id)
        assert [e.kind for e in history.entries].count("refund") == 1
        await trio.sleep(1)
        (failed,) = terminal_events(w.received, job)
    assert failed.type == "generation:failed"
    assert failed.data["credit_refunded"] == COST


async def test_rate_limited_waits_and_does_not_count_the_attempt(
    tmp_path: Path, thread_safe_autojump: trio.testing.MockClock
) -> None:
    async with world(tmp_path) as w:
        job = await w.submit(["rate_limited", "ok"])
        done = await w.until_finished(job)
        (first_at, first_attempt), (second_at, second_attempt) = w.script.calls
    assert done.status == "succeeded"
    assert second_at - first_at >= 30
    assert first_attempt == second_attempt == 1


async def test_a_loading_model_is_retried_after_its_estimate_and_an_open_breaker_holds(
    tmp_path: Path, thread_safe_autojump: trio.testing.MockClock
) -> None:
    async with world(tmp_path) as w:
        job = await w.submit(["loading", "breaker_open", "ok"])
        done = await w.until_finished(job)
        (first, a1), (second, a2), (third, a3) = w.script.calls
        retried = [e for e in w.received if e.type == "generation:retrying"]
    assert done.status == "succeeded"
    assert 45 <= second - first <= 47  # the estimate, not the 5-10 s backoff
    assert 20 <= third - second <= 22
    assert (a1, a2, a3) == (1, 2, 2)  # loading counts the attempt; a refused call does not
    assert [e.data["error"]["code"] for e in retried] == ["TRANSIENT", "PROVIDER_UNAVAILABLE"]


async def test_a_kind_that_is_unavailable_keeps_its_jobs_queued(
    tmp_path: Path, thread_safe_autojump: trio.testing.MockClock
) -> None:
    provider_up = False
    async with world(tmp_path, available=lambda _deps: provider_up) as w:
        job = await w.submit(["ok"])
        await trio.sleep(30)  # many poll intervals: never claimed, never failed
        held = await jobs.get_job(w.deps.store, job.id, user_id=w.user_id, is_admin=False)
        assert (held.status, held.attempt, held.error) == ("queued", 0, None)
        assert w.script.calls == []
        provider_up = True  # the next poll claims it
        done = await w.until_finished(job)
        assert (done.status, done.attempt) == ("succeeded", 1)
        assert len(w.script.calls) == 1


async def test_retries_exhausted_fail_and_refund_once(
    tmp_path: Path, thread_safe_autojump: trio.testing.MockClock
) -> None:
    async with world(tmp_path) as w:
        job = await w.submit(["transient"])
        done = await w.until_finished(job)
        assert (done.status, done.attempt, done.refunded) == ("failed", 3, COST)
        assert len(w.script.calls) == 3
        assert await w.balance() == 100
        dead = await jobs.list_admin(w.deps.store, status="failed")
        assert [j.id for j in dead.jobs] == [job.id]
        retried = await jobs.admin_retry(w.deps.store, job.id)
        assert retried.job.status == "queued"
        assert await w.balance() == 100 - COST  # an admin retry charges again


async def test_shutdown_releases_a_job_that_outlives_the_grace(
    tmp_path: Path, thread_safe_autojump: trio.testing.MockClock
) -> None:
    script_calls: list[tuple[float, int]] = []
    async with world(tmp_path) as w:
        job = await w.submit(["hang"])
        with trio.fail_after(60):
            while not w.workers.running:
                await trio.sleep(0.1)
        w.deps.shutdown.request("test")
        with trio.fail_after(60):
            await w.workers.drained.wait()
        released = await jobs.get_job(w.deps.store, job.id, user_id=w.user_id, is_admin=False)
        script_calls = list(w.script.calls)
        assert w.deps.jobs.metrics.released_total["demo.script"] == 1
        assert await w.balance() == 100 - COST  # no refund
    assert released.status == "queued"
    assert released.attempt == 0  # the interrupted attempt does not count
    assert released.error is None
    assert len(script_calls) == 1


async def test_reaper_requeues_a_job_whose_instance_vanished(
    tmp_path: Path, thread_safe_autojump: trio.testing.MockClock
) -> None:
    from datetime import timedelta

    from lumiku.jobs.reaper import serve_reaper

    settings = make_settings(tmp_path, {"LUMIKU_JOBS_LEASE_S": "30"})
    async with open_deps(settings) as deps, trio.open_nursery() as nursery:
        user = await create_user(deps, email="r@example.com", password=STRONG_PASSWORD, credits=100)
        submitted = await jobs.submit(
            deps.store,
            user_id=user.id,
            tags=(),
            app="demo",
            kind="demo.script",
            payload={"plan": ["ok"]},
            cost=COST,
            policy=CreditsPolicy.from_settings(settings.credits),
        )
        clock = trio_clock()
        # "Instance B" claims the job and dies: its lease ends 30 s from now.
        (claimed,) = await jobs.claim(
            deps.store,
            worker_id="vanished",
            slots={"demo.script": 1},
            per_user_running=2,
            lease_s=30,
            now=clock(),
        )
        received: list[Event] = []
        nursery.start_soon(collect_events, deps, user.id, received)
        await nursery.start(partial(serve_reaper, deps, clock=clock))
        with trio.fail_after(120):
            while True:
                job = await jobs.get_job(deps.store, claimed.id, user_id=user.id, is_admin=False)
                if job.status == "queued":
                    break
                await trio.sleep(1)
            while deps.jobs.queued != 1:  # the depth systemd's STATUS= line shows
                await trio.sleep(1)
        assert deps.jobs.metrics.stalls_total["demo.script"] == 1
        nursery.cancel_scope.cancel()
    assert job.run_after > clock() - timedelta(seconds=1)  # queued again with a backoff
    assert job.refunded == 0
    assert submitted.job.id == job.id
    assert [e.type for e in received] == ["generation:retrying"]


@attrs.define
class CountingStore:
    """The real store, counting the progress writes that go through it."""

    store: Any
    progress_writes: int = 0

    async def execute(self, query: Any, *args: Any) -> int:
        if query is jobs.transitions.Q.set_progress:
            self.progress_writes += 1
        count: int = await self.store.execute(query, *args)
        return count

    async def execute_many(self, query: Any, rows: Any) -> None:
        if query is jobs.transitions.Q.set_progress:
            self.progress_writes += len(rows)
        await self.store.execute_many(query, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


async def test_progress_is_published_every_time_and_stored_at_most_every_half_second(
    tmp_path: Path, thread_safe_autojump: trio.testing.MockClock
) -> None:
    async with world(tmp_path) as w:
        counting = CountingStore(w.deps.store)
        w.workers.deps = attrs.evolve(w.deps, store=counting)
        job = await w.submit(["chatty"])
        started = trio.current_time()
        done = await w.until_finished(job)
        took_s = trio.current_time() - started
        await trio.sleep(1)
        events = [e for e in w.received if e.job_id == str(job.id)]
    progress = [e for e in events if e.type == "generation:progress"]
    # 1 + 50 reports (the script reports once before its step), each one published
    assert len(progress) == CHATTY + 1
    # generation:queued (seq 1) belongs to submit_job, which this world bypasses
    assert [e.seq for e in events] == list(range(2, len(events) + 2))
    assert events[0].type == "generation:started"
    assert events[-1].type == "generation:completed"
    # ... while the row took at most one write per 0.5 s of running
    assert 1 <= counting.progress_writes <= took_s / 0.5 + 1
    assert done.event_seq == events[-1].seq
    assert (done.progress.percent, done.progress.stage) == (100, "chatting")


async def test_the_heartbeat_renews_leases_drops_a_lost_job_and_sees_a_cancel_request(
    tmp_path: Path, thread_safe_autojump: trio.testing.MockClock
) -> None:
    from tests.contract.test_jobs import JQ

    async with world(tmp_path) as w:
        stolen, flagged = await w.submit(["hang"]), await w.submit(["hang"])

        async def stored(job: jobs.Job) -> jobs.Job:
            return await jobs.get_job(w.deps.store, job.id, user_id=w.user_id, is_admin=False)

        with trio.fail_after(60):
            while len(w.workers.running) < 2:
                await trio.sleep(0.1)
        leases = [(await stored(job)).lease_expires_at for job in (stolen, flagged)]
        await trio.sleep(11)  # one heartbeat (lease 30 s: every 10 s)
        for job, lease in zip((stolen, flagged), leases, strict=True):
            assert (await stored(job)).lease_expires_at >= lease + timedelta(seconds=9)
        await w.deps.store.execute(JQ.steal_job, stolen.id)
        await w.deps.store.execute(JQ.flag_cancel_quietly, flagged.id)
        with trio.fail_after(11):  # within one heartbeat, no signal needed
            while w.workers.running:
                await trio.sleep(0.1)
        taken, cancelled = await stored(stolen), await stored(flagged)
        assert (taken.status, taken.worker_id, taken.attempt) == ("running", "thief", 2)
        assert (taken.result, taken.refunded) == (None, 0)  # the lost run wrote nothing
        assert (cancelled.status, cancelled.refunded) == ("cancelled", COST)
        assert await w.balance() == 100 - COST
        assert [e.type for e in terminal_events(w.received, stolen)] == []
        assert [e.type for e in terminal_events(w.received, flagged)] == ["generation:cancelled"]
