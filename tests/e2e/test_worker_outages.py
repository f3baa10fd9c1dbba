"""The workers and the reaper through a database outage, on SQLite with a FlakyStore and
autojump_clock (SPEC §1, §6): a job whose final write fails is logged with its id and
trace and left as it is; the workers go on; once the database is back the reaper recovers
the job and it ends exactly once, charged once and refunded at most once."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
from collections.abc import AsyncIterator
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
from lumiku.errors import Permanent, Transient
from lumiku.events import TERMINAL, Event
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from lumiku.jobs.reaper import serve_reaper
from lumiku.jobs.worker import Workers, serve_workers, trio_clock
from lumiku.observability import logging as logs
from lumiku.supervisor import keep_serving, open_deps
from lumiku.systemd import Beacon
from lumiku.testing import FlakyStore
from tests.e2e.harness import STRONG_PASSWORD, make_settings
from tests.e2e.test_workers import collect_events

COST = 10
OUTAGE_S = 20


@attrs.define
class OutageScript:
    """Attempt 1 takes the database away just before its result is written, then ends as
    `first` says; later attempts succeed, unless `first` is permanent."""

    first: str
    attempts: list[int] = attrs.field(factory=list)

    async def __call__(self, ctx: JobContext) -> Outcome:
        self.attempts.append(ctx.attempt)
        await ctx.progress(1, 2, "working")
        if ctx.attempt == 1:
            ctx.deps.store.down = True
            if self.first == "transient":
                raise Transient("upstream 503")
        if self.first == "permanent":  # every time: the second attempt's write ends it
            raise Permanent("content rejected")
        return Outcome({"attempt": ctx.attempt})


@attrs.define
class World:
    deps: Deps
    store: FlakyStore
    workers: Workers
    user_id: Any
    received: list[Event]
    log: io.StringIO

    def log_lines(self, event: str) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.log.getvalue().splitlines()]
        return [line for line in lines if line["event"] == event]

    async def stored(self, job: jobs.Job) -> jobs.Job:
        return await jobs.get_job(self.store.store, job.id, user_id=self.user_id, is_admin=False)


@contextlib.asynccontextmanager
async def world(tmp_path: Path, script: OutageScript) -> AsyncIterator[World]:
    kind = JobKind("demo.script", script, concurrency=2, timeout_s=60)
    registry = Registry([App("demo", "Demo", kinds=(kind,))])
    settings = make_settings(tmp_path, {"LUMIKU_JOBS_BACKOFF_S": "10"})
    output = io.StringIO()
    logs.configure("info", "json", stream=output)
    async with open_deps(settings, apps=registry) as real, trio.open_nursery() as nursery:
        store = FlakyStore(real.store)
        deps = attrs.evolve(real, store=store)
        user = await create_user(deps, email="o@example.com", password=STRONG_PASSWORD, credits=100)
        received: list[Event] = []
        nursery.start_soon(collect_events, deps, user.id, received)
        clock = trio_clock()
        workers = await nursery.start(
            keep_serving, "jobs.workers", partial(serve_workers, clock=clock), deps, Beacon("w")
        )
        await nursery.start(keep_serving, "jobs.reaper", partial(serve_reaper, clock=clock), deps)
        yield World(deps, store, workers, user.id, received, output)
        deps.shutdown.request("test finished")
        with trio.fail_after(60):
            await workers.drained.wait()
        nursery.cancel_scope.cancel()


@pytest.fixture
def thread_safe_autojump() -> trio.testing.MockClock:
    """Jumps only after 50 ms of real idleness (SQLite statements run in threads)."""
    return trio.testing.MockClock(autojump_threshold=0.05)


@pytest.mark.parametrize(
    ("first", "status", "refunded", "error"),
    [
        ("ok", "succeeded", 0, None),  # the completions group commit fails
        ("transient", "succeeded", 0, None),  # transitions.retry fails (issue 13)
        ("permanent", "failed", COST, "PERMANENT"),  # transitions.fail fails
    ],
)
async def test_a_job_whose_final_write_fails_is_recovered_by_the_reaper(
    tmp_path: Path,
    thread_safe_autojump: trio.testing.MockClock,
    first: str,
    status: str,
    refunded: int,
    error: str | None,
) -> None:
    script = OutageScript(first)
    async with world(tmp_path, script) as w:
        submitted = await jobs.submit(
            w.store.store,
            user_id=w.user_id,
            tags=(),
            app="demo",
            kind="demo.script",
            payload={},
            cost=COST,
            policy=CreditsPolicy.from_settings(w.deps.settings.credits),
        )
        job = submitted.job
        w.workers.wake()
        with trio.fail_after(60):
            while not w.log_lines("jobs.finish_failed"):
                await trio.sleep(0.1)
        await trio.sleep(OUTAGE_S)  # the workers and the reaper keep trying meanwhile
        during = await w.stored(job)
        troubles = w.deps.troubles.snapshot()
        assert not w.workers.running  # the slot is free again
        w.store.down = False

        with trio.fail_after(600):
            while (done := await w.stored(job)).status not in jobs.FINISHED:
                await trio.sleep(1)
        await trio.sleep(1)
        balance = await ledger.balance(w.store.store, w.user_id)
        history = await ledger.history(w.store.store, w.user_id)
        terminal = [e for e in w.received if e.job_id == str(job.id) and e.type in TERMINAL]
        (failed_write,) = w.log_lines("jobs.finish_failed")
        retried = {line["task"] for line in w.log_lines("service.task_retrying")}
        recovered = {line["task"] for line in w.log_lines("service.task_recovered")}
        assert w.log_lines("service.task_failed") == []
        after = w.deps.troubles.snapshot()

    # During the outage the job was left exactly as it was: running attempt 1.
    assert (during.status, during.attempt, during.refunded, during.result) == (
        "running",
        1,
        0,
        None,
    )
    assert troubles["status"] == "degraded"
    assert {"jobs.claim", "jobs.reaper"} <= set(troubles["failing"])
    assert {"jobs.claim", "jobs.reaper"} <= retried & recovered
    assert after == {"status": "ok", "failing": {}}
    # The failure was logged with the job id and the traceback.
    assert failed_write["job_id"] == str(job.id)
    assert failed_write["level"] == "error"
    assert "Unavailable" in failed_write["exception"]
    assert "_finish" in failed_write["exception"]
    # Once back, the reaper recovered it and the next attempt ended it, once.
    assert script.attempts == [1, 2]
    assert (done.status, done.attempt, done.refunded) == (status, 2, refunded)
    assert (done.error and done.error.code) == error  # no stale STALLED after a success
    assert len(terminal) == 1
    assert balance == 100 - COST + refunded
    kinds = [e.kind for e in history.entries]
    assert kinds.count("charge") == 1
    assert kinds.count("refund") == (1 if refunded else 0)


@attrs.define
class LongJob:
    """Runs 25 s, reporting progress every second; the database is away from 1 s to 15 s
    into the run (a heartbeat and many progress writes fail, the lease survives)."""

    attempts: list[int] = attrs.field(factory=list)

    async def __call__(self, ctx: JobContext) -> Outcome:
        self.attempts.append(ctx.attempt)
        store: FlakyStore = ctx.deps.store  # type: ignore[assignment]
        for second in range(1, 26):
            store.down = 1 <= second < 15
            await ctx.progress(second, 25, "working")
            await trio.sleep(1)
        return Outcome({"attempt": ctx.attempt})


async def test_heartbeats_and_progress_ride_out_a_short_outage(
    tmp_path: Path, thread_safe_autojump: trio.testing.MockClock
) -> None:
    script = LongJob()
    async with world(tmp_path, script) as w:  # type: ignore[arg-type]
        submitted = await jobs.submit(
            w.store.store,
            user_id=w.user_id,
            tags=(),
            app="demo",
            kind="demo.script",
            payload={},
            cost=COST,
            policy=CreditsPolicy.from_settings(w.deps.settings.credits),
        )
        w.workers.wake()
        with trio.fail_after(600):
            while (done := await w.stored(submitted.job)).status not in jobs.FINISHED:
                await trio.sleep(1)
        retried = {line["task"] for line in w.log_lines("service.task_retrying")}
        recovered = {line["task"] for line in w.log_lines("service.task_recovered")}
        assert w.log_lines("jobs.finish_failed") == []
        assert w.log_lines("jobs.lease_lost") == []
    assert script.attempts == [1]  # the lease held: never reaped, never run twice
    assert (done.status, done.attempt, done.error) == ("succeeded", 1, None)
    assert (done.progress.completed, done.progress.total) == (25, 25)
    assert {"jobs.heartbeat", "jobs.progress"} <= retried & recovered


async def test_signals_and_payment_expiry_back_off_until_the_database_answers(
    tmp_path: Path, thread_safe_autojump: trio.testing.MockClock
) -> None:
    from lumiku.jobs.signals import serve_signals
    from lumiku.payments.expiry import serve_payment_expiry

    output = io.StringIO()
    logs.configure("info", "json", stream=output)
    settings = make_settings(tmp_path)
    async with open_deps(settings) as real, trio.open_nursery() as nursery:
        listening, expiring = FlakyStore(real.store, failures=4), FlakyStore(real.store, failures=4)
        deps = attrs.evolve(real, store=listening)
        await nursery.start(keep_serving, "jobs.signals", serve_signals, deps)
        await nursery.start(
            keep_serving,
            "payments.expiry",
            partial(serve_payment_expiry, troubles=deps.troubles),
            expiring,
            60.0,
        )
        await trio.sleep(1)
        signals_down = deps.troubles.snapshot()
        await trio.sleep(60.1)  # the first expiry run (at 60 s) fails
        expiry_down = deps.troubles.snapshot()
        await trio.sleep(60)
        after = deps.troubles.snapshot()
        nursery.cancel_scope.cancel()
    lines = [json.loads(line) for line in output.getvalue().splitlines()]
    retries = [x for x in lines if x["event"] == "service.task_retrying"]
    for task in ("jobs.signals", "payments.expiry"):
        mine = [x for x in retries if x["task"] == task]
        assert [x["attempt"] for x in mine] == [1, 2, 3, 4]
        delays = [x["retry_in_s"] for x in mine]
        assert all(a < b for a, b in itertools.pairwise(delays))  # backing off
        assert 0.25 <= delays[0] <= 0.5
    recovered = {x["task"] for x in lines if x["event"] == "service.task_recovered"}
    assert recovered == {"jobs.signals", "payments.expiry"}
    assert set(signals_down["failing"]) == {"jobs.signals"}
    assert set(expiry_down["failing"]) == {"payments.expiry"}
    assert after == {"status": "ok", "failing": {}}
    assert [x for x in lines if x["event"] == "service.task_failed"] == []


@attrs.define
class StallingScript:
    """Attempt 1 silences the database (calls hang, no error) before its result is written,
    then ends as `first` says; later attempts succeed."""

    first: str
    attempts: list[int] = attrs.field(factory=list)
    stalled_at: float | None = None

    async def __call__(self, ctx: JobContext) -> Outcome:
        self.attempts.append(ctx.attempt)
        if ctx.attempt == 1:
            ctx.deps.store.stall()  # type: ignore[attr-defined]
            self.stalled_at = trio.current_time()
            if self.first == "transient":
                raise Transient("upstream 503")
        return Outcome({"attempt": ctx.attempt})


@pytest.mark.parametrize(
    ("first", "attempts"),
    [
        # the retry's own transaction hangs: cancelled by the cleanup budget, nothing written;
        # the reaper recovers the job and attempt 2 ends it
        ("transient", [1, 2]),
        # the group commit's statement hangs: the job's task stops waiting for it, but the
        # batch goes through once the database answers again, still fenced, and is
        # announced then
        ("ok", [1]),
    ],
)
async def test_a_final_write_that_hangs_is_bounded_and_the_job_ends_once(
    tmp_path: Path, thread_safe_autojump: trio.testing.MockClock, first: str, attempts: list[int]
) -> None:
    script = StallingScript(first)
    async with world(tmp_path, script) as w:  # type: ignore[arg-type]
        submitted = await jobs.submit(
            w.store.store,
            user_id=w.user_id,
            tags=(),
            app="demo",
            kind="demo.script",
            payload={},
            cost=COST,
            policy=CreditsPolicy.from_settings(w.deps.settings.credits),
        )
        w.workers.wake()
        with trio.fail_after(60):
            while not w.log_lines("jobs.finish_timed_out"):
                await trio.sleep(0.1)
        assert script.stalled_at is not None
        gave_up_after = trio.current_time() - script.stalled_at
        during = await w.stored(submitted.job)
        slot_free = not w.workers.running
        w.store.resume()
        with trio.fail_after(600):
            while (done := await w.stored(submitted.job)).status not in jobs.FINISHED:
                await trio.sleep(1)
        (timed_out,) = w.log_lines("jobs.finish_timed_out")
        balance = await ledger.balance(w.store.store, w.user_id)
        await trio.sleep(1)
        job_id = str(submitted.job.id)
        terminal = [e for e in w.received if e.job_id == job_id and e.type in TERMINAL]
        late = w.log_lines("jobs.finish_written_late")
    assert 10 <= gave_up_after <= 10.2  # the cleanup budget, not forever
    assert slot_free
    assert (during.status, during.attempt, during.result) == ("running", 1, None)
    assert timed_out["job_id"] == str(submitted.job.id)
    assert script.attempts == attempts
    assert (done.status, done.attempt, done.refunded, done.error) == (
        "succeeded",
        attempts[-1],
        0,
        None,
    )
    assert balance == 100 - COST
    assert [e.type for e in terminal] == ["generation:completed"]  # announced once, late or not
    assert [x["job_id"] for x in late] == ([job_id] if first == "ok" else [])
