"""Acceptance (SPEC §6, §15): with two instances and `per_user_running = 2`, one user's 10
jobs never run more than 2 at a time while another user's jobs still start.

Two instances share one PostgreSQL database and the JWT secret. Each serves its own kind of
the same app — `demo.a` only on A, `demo.b` only on B (an instance never claims a kind its
registry lacks) — so which instance runs a job is decided by its kind, not by luck, and the
two instances never compete for the same rows: SKIP LOCKED cannot keep them apart, only
the per-user claim lock (`queue.claim`) can.

The race is staged, not hoped for: while X's 10 jobs are queued the test holds X's claim
lock (claimers skip X), then holds `LOCK TABLE jobs` until BOTH instances' claim queries
wait on it, and lets them go at the same instant. Both then see X with 0 running and their
own kind's X jobs due. After that, every job is held by its handler until the test releases
it, one at a time, only once X runs 2 again — so X is always at its cap and one slot
changes hands per step; with 5 jobs of each kind, X necessarily runs on both instances at
once at some step, and each claim there counts the other instance's running job.

Handlers record what runs in a `Tracker` shared by both instances (one process).
"""

from __future__ import annotations

import contextlib
import secrets
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Final

import attrs
import httpx
import trio

from lumiku.apps.registry import App, Registry
from lumiku.db.queries import Query, build_queries
from lumiku.db.store import Store
from lumiku.jobs.kinds import Handler, JobContext, JobKind, Outcome
from lumiku.jobs.submit import Q as JOBS_Q
from tests.e2e.harness import Service, bearer, make_settings, register, running_service
from tests.services import open_test_store

PER_USER_RUNNING: Final = 2
X_JOBS: Final = 10  # half of kind demo.a (runs on A), half demo.b (runs on B)
Y_JOBS: Final = 4
KINDS: Final = {"A": "demo.a", "B": "demo.b"}

# Test-only statements for staging the race.
TQ: Final = build_queries(
    """
-- name: lock_jobs_table
-- Every claim's first statement waits on this until the transaction ends.
LOCK TABLE jobs IN EXCLUSIVE MODE

-- name: count_waiting
-- Sessions of this database waiting on a lock while running exactly statement $1.
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock' AND query = $1
""",
    source="tests/e2e/test_scaleout_jobs.py",
)


@attrs.define
class Tracker:
    """What the handlers of both instances saw: who runs where, and since when."""

    running: dict[str, dict[str, str]] = attrs.field(factory=dict)  # who -> {job: instance}
    most_running: Counter[str] = attrs.field(factory=Counter)
    started: Counter[str] = attrs.field(factory=Counter)
    finished: Counter[str] = attrs.field(factory=Counter)
    ran_on: dict[str, set[str]] = attrs.field(factory=dict)
    # users seen running on both instances at the same moment
    on_both_at_once: set[str] = attrs.field(factory=set)
    # at each user's first start: how many jobs each user had started by then
    started_before_first: dict[str, Counter[str]] = attrs.field(factory=dict)
    _gates: dict[str, trio.Event] = attrs.field(factory=dict)
    _changed: trio.Event = attrs.field(factory=trio.Event)

    def enter(self, instance: str, who: str, job_id: str) -> trio.Event:
        self.started_before_first.setdefault(who, Counter(self.started))
        mine = self.running.setdefault(who, {})
        mine[job_id] = instance
        self.started[who] += 1
        self.ran_on.setdefault(who, set()).add(instance)
        self.most_running[who] = max(self.most_running[who], len(mine))
        if len(set(mine.values())) > 1:
            self.on_both_at_once.add(who)
        self._gates[job_id] = trio.Event()
        self._notify()
        return self._gates[job_id]

    def leave(self, who: str, job_id: str) -> None:
        del self.running[who][job_id]
        self.finished[who] += 1
        self._notify()

    def release_oldest(self, who: str) -> None:
        oldest = next(iter(self.running[who]))
        self._gates[oldest].set()

    def running_count(self, who: str) -> int:
        return len(self.running.get(who, {}))

    async def wait_running(self, who: str, at_least: int) -> None:
        await self._wait_until(lambda: self.running_count(who) >= at_least)

    async def wait_finished(self, who: str, at_least: int) -> None:
        await self._wait_until(lambda: self.finished[who] >= at_least)

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()


def holding(instance: str, tracker: Tracker) -> Handler:
    """A handler that records its job as running on `instance` until the test releases it."""

    async def hold(ctx: JobContext) -> Outcome:
        who = str(ctx.payload["who"])
        released = tracker.enter(instance, who, ctx.job_id)
        try:
            await released.wait()
        finally:
            tracker.leave(who, ctx.job_id)
        return Outcome({"instance": instance})

    return hold


def registry(instance: str, tracker: Tracker) -> Registry:
    kind = JobKind(KINDS[instance], holding(instance, tracker), concurrency=4)
    return Registry([App("demo", "Demo", kinds=(kind,))])


@attrs.define
class Cluster:
    a: Service
    b: Service
    store: Store  # the test's own connection to the shared database
    tracker: Tracker

    def by_instance(self) -> dict[str, Service]:
        return {"A": self.a, "B": self.b}


@contextlib.asynccontextmanager
async def open_cluster(tmp_path: Path, postgres_url: str) -> AsyncIterator[Cluster]:
    tracker = Tracker()
    env = {
        "LUMIKU_DATABASE_URL": postgres_url,
        "LUMIKU_AUTH_JWT_SECRET": secrets.token_urlsafe(48),
        "LUMIKU_JOBS_PER_USER_RUNNING": str(PER_USER_RUNNING),
        "LUMIKU_JOBS_POLL_S": "0.05",
        "LUMIKU_SHUTDOWN_GRACE_S": "1",
    }
    with trio.fail_after(60):
        async with (
            running_service(make_settings(tmp_path / "a", env), apps=registry("A", tracker)) as a,
            running_service(make_settings(tmp_path / "b", env), apps=registry("B", tracker)) as b,
            open_test_store(postgres_url, tmp_path / "test") as store,
        ):
            yield Cluster(a, b, store, tracker)


async def submit(service: Service, token: str, kind: str, who: str) -> None:
    response = await service.client.post(
        "/api/_test/jobs",
        json={"app": "demo", "kind": kind, "cost": 1, "payload": {"who": who}},
        headers=bearer(token),
    )
    assert response.status_code == 202, response.text


async def submit_spread(cluster: Cluster, token: str, who: str, count: int) -> None:
    """`count` jobs for `who`, alternating A's kind (through A) and B's (through B)."""
    services = list(cluster.by_instance().items())
    for n in range(count):
        instance, service = services[n % 2]
        await submit(service, token, KINDS[instance], who)


async def hold_transaction(
    store: Store,
    statement: Query,
    args: tuple[Any, ...],
    release: trio.Event,
    *,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run `statement` in a transaction kept open (its locks held) until `release`."""
    async with store.transaction() as tx:
        task_status.started(await tx.fetch_val(statement, *args))
        await release.wait()


async def drain(tracker: Tracker, who: str, total: int) -> None:
    """Release `who`'s jobs one by one, each only once `who` runs as many as it may."""
    for done in range(total):
        await tracker.wait_running(who, at_least=min(PER_USER_RUNNING, total - done))
        tracker.release_oldest(who)
        await tracker.wait_finished(who, at_least=done + 1)


async def statuses(client: httpx.AsyncClient, token: str) -> Counter[str]:
    response = await client.get("/api/jobs?limit=100", headers=bearer(token))
    assert response.status_code == 200, response.text
    return Counter(job["status"] for job in response.json()["jobs"])


async def test_one_users_jobs_never_exceed_the_cap_across_instances_while_others_start(
    tmp_path: Path, postgres_url: str
) -> None:
    async with open_cluster(tmp_path, postgres_url) as cluster:
        tracker, store = cluster.tracker, cluster.store
        x = await register(cluster.a.client, "x@example.com")
        y = await register(cluster.b.client, "y@example.com")
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                # 1. Queue X's jobs while every claimer skips X (the test holds X's lock).
                x_lock_released = trio.Event()
                locked = await nursery.start(
                    hold_transaction,
                    store,
                    JOBS_Q.lock_users,
                    ([x["user"]["id"]],),
                    x_lock_released,
                )
                assert locked == x["user"]["id"]
                await submit_spread(cluster, x["token"], "x", X_JOBS)
                assert tracker.started["x"] == 0
                # 2. Stop both instances' claims at their first statement, give X back, and
                # let both claims go at the same instant.
                table_released = trio.Event()
                await nursery.start(hold_transaction, store, TQ.lock_jobs_table, (), table_released)
                x_lock_released.set()
                claim_sql = JOBS_Q.claim_candidates.postgres
                while await store.fetch_val(TQ.count_waiting, claim_sql) < 2:
                    await trio.sleep(0.01)
                table_released.set()
            # 3. X reaches its cap; Y's jobs start while X still has queued jobs.
            await tracker.wait_running("x", at_least=PER_USER_RUNNING)
            await submit_spread(cluster, y["token"], "y", Y_JOBS)
            await tracker.wait_running("y", at_least=PER_USER_RUNNING)
            assert tracker.started_before_first["y"]["x"] < X_JOBS
            assert tracker.started["x"] == PER_USER_RUNNING  # held: X's other 8 are queued
            # 4. Run everything to the end, one released job at a time per user.
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain, tracker, "x", X_JOBS)
                nursery.start_soon(drain, tracker, "y", Y_JOBS)
            for user, total in ((x, X_JOBS), (y, Y_JOBS)):
                while await statuses(cluster.b.client, user["token"]) != {"succeeded": total}:
                    await trio.sleep(0.05)

        assert tracker.most_running["x"] == PER_USER_RUNNING  # at the cap, never above it
        assert tracker.most_running["y"] == PER_USER_RUNNING
        assert (tracker.started["x"], tracker.started["y"]) == (X_JOBS, Y_JOBS)
        assert tracker.ran_on["x"] == {"A", "B"}
        assert "x" in tracker.on_both_at_once  # the cap held across instances
