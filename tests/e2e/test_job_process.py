"""Jobs across real process lifetimes (SPEC §1 step 4, §5, §6, §7), on PostgreSQL: a job
released by SIGTERM and finished by the next instance; and 200 jobs surviving an instance
that is SIGKILLed and restarted three times."""

from __future__ import annotations

import os
import random
import signal
import sys
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from lumiku import jobs
from lumiku.config import Settings
from lumiku.credits import ledger
from lumiku.jobs import restore
from lumiku.supervisor import open_deps
from tests.e2e.chaos import (
    JOB_TEST_ENV,
    Restarts,
    job_entries,
    lines_about,
    open_restarts,
    settings_of,
    stream_events,
    submit,
    terminal_types,
    unflushed_database,
    wait_for_terminal_events,
)
from tests.e2e.harness import bearer, register
from tests.e2e.process import ROOT, base_env

pytestmark = pytest.mark.slow

COST = 10
TERMINAL_EVENT = {
    "succeeded": "generation:completed",
    "failed": "generation:failed",
    "cancelled": "generation:cancelled",
}


def job_env(tmp_path: Path, database_url: str, extra: dict[str, str]) -> dict[str, str]:
    return base_env(tmp_path, {**JOB_TEST_ENV, "LUMIKU_DATABASE_URL": database_url, **extra})


async def wait_for_job(
    client: httpx.AsyncClient, token: str, job_id: str, statuses: set[str]
) -> dict[str, Any]:
    """The job once its status is one of `statuses` (polled over the API)."""
    while True:
        response = await client.get(f"/api/jobs/{job_id}", headers=bearer(token))
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()["job"]
        if job["status"] in statuses:
            return job
        await trio.sleep(0.05)


# --- SIGTERM: release, then resume ----------------------------------------------------------

GRACE_S = 1.0


async def test_sigterm_releases_a_job_outliving_the_grace_and_a_restart_completes_it(
    tmp_path: Path, postgres_url: str
) -> None:
    release_file = tmp_path / "release-the-job"
    env = job_env(
        tmp_path,
        postgres_url,
        {"LUMIKU_SHUTDOWN_GRACE_S": str(GRACE_S), "LUMIKU_JOBS_POLL_S": "0.1"},
    )
    settings = settings_of(env, tmp_path)
    with trio.fail_after(60):
        async with open_restarts(env) as service:
            await service.start()
            async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as client:
                user = await register(client, "release@example.com")
                token, user_id = user["token"], uuid.UUID(user["user"]["id"])
                submitted = await submit(
                    client, token, "demo.hang", {"release_file": str(release_file)}, COST
                )
                running = await wait_for_job(client, token, submitted["id"], {"running"})
            await service.current.wait_for("demo.hang_started")
            # the handler hangs past the grace: it is cancelled and the job released
            assert await service.stop(signal.SIGTERM) == 0
            between = await job_and_ledger(settings, submitted["id"], user_id)

            release_file.touch()
            await service.start()
            async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as client:
                done = await wait_for_job(
                    client, token, submitted["id"], {"succeeded", "failed", "cancelled"}
                )
            assert await service.stop(signal.SIGTERM) == 0
    after = await job_and_ledger(settings, submitted["id"], user_id)

    assert running["attempt"] == submitted["attempt"] + 1
    job, entries, balance = between
    assert (job.status, job.attempt) == ("queued", submitted["attempt"])
    assert (job.error, job.refunded, job.worker_id, job.lease_expires_at) == (None, 0, None, None)
    assert [(e.kind, e.delta) for e in entries] == [("charge", -COST)]
    assert balance == user["balance"] - COST
    # the restarted instance ran it once more, as the same (uncounted) attempt
    assert done["status"] == "succeeded", done
    assert done["result"] == {"attempt": running["attempt"]}
    job, entries, balance = after
    assert (job.status, job.attempt, job.refunded) == ("succeeded", running["attempt"], 0)
    assert [(e.kind, e.delta, e.ref_id) for e in entries] == [("charge", -COST, str(job.id))]
    assert balance == user["balance"] - COST
    # each instance started the handler once: the first did not retry it while draining
    for instance in service.instances:
        starts = [line for line in instance.lines if line["event"] == "demo.hang_started"]
        assert [line["attempt"] for line in starts] == [running["attempt"]]


async def job_and_ledger(
    settings: Settings, job_id: str, user_id: uuid.UUID
) -> tuple[jobs.Job, list[ledger.Entry], int]:
    """The job row, its user's job-referencing ledger entries and balance, read directly."""
    async with open_deps(settings, migrate=False) as deps:
        job = await jobs.get_job(deps.store, uuid.UUID(job_id), user_id=user_id, is_admin=True)
        entries = await job_entries(deps.store, user_id)
        return job, entries, await ledger.balance(deps.store, user_id)


# --- SIGKILL chaos --------------------------------------------------------------------------

USERS = 20
JOBS = 200
KILLS = 3
CANCELS = 10
CHAOS_COST = 5
BONUS = 1000
MS_RANGE = (50, 500)
STEPS = 3
KILL_AFTER_S = (0.5, 3.0)
# a reaper round (lease_s / 2) and the time to look
RESTORE_MARGIN_S = 3.0


async def test_sigkill_three_times_every_job_ends_once_charged_once_one_terminal_event(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    """20 users queue 200 jobs of 50-500 ms; the service is SIGKILLed at 3 moments drawn
    from a seeded schedule (`CHAOS_SEED=<n>` replays one; every message names it) and
    restarted on the same PostgreSQL and Redis; 10 jobs are cancelled after the first
    restart. Then the ledger, `lumiku reconcile` and every job's Redis stream are checked."""
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    rng = random.Random(seed)
    plan = [(n % USERS, rng.randint(*MS_RANGE)) for n in range(JOBS)]
    kill_after_s = [rng.uniform(*KILL_AFTER_S) for _ in range(KILLS)]
    to_cancel = rng.sample(range(JOBS), CANCELS)
    env = job_env(
        tmp_path,
        postgres_url,
        {
            "LUMIKU_REDIS_URL": unflushed_database(redis_url),
            "LUMIKU_CREDITS_WELCOME_BONUS": str(BONUS),
            "LUMIKU_JOBS_LEASE_S": "2",
            "LUMIKU_JOBS_POLL_S": "0.2",
            "LUMIKU_JOBS_BACKOFF_S": "0.2",
            "LUMIKU_JOBS_BACKOFF_MAX_S": "1",
            "LUMIKU_SHUTDOWN_GRACE_S": "5",
        },
    )
    settings = settings_of(env, tmp_path)
    why = f"CHAOS_SEED={seed}"
    with trio.fail_after(120):
        async with open_restarts(env) as service:
            await service.start()
            async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as client:
                users = [await register(client, f"chaos{n}@example.com") for n in range(USERS)]
                submitted = await submit_all(client, users, plan)
            cancel_codes: dict[str, int] = {}
            for number, delay_s in enumerate(kill_after_s):
                await trio.sleep(delay_s)  # a random moment of this instance's work
                assert await service.stop(signal.SIGKILL) == -signal.SIGKILL, why
                await service.start()
                if number == 0:
                    picked = [(users[plan[n][0]], submitted[n]) for n in to_cancel]
                    cancel_codes = await cancel_all(service.base_url, picked)
            await wait_until_all_finished(service.base_url, len(submitted))
            # a terminal event lost to a kill (after its commit, before its publish) is
            # restored by a later instance once the job is restore.SETTLE_S old
            job_ids = [job["id"] for job in submitted]
            await wait_for_terminal_events(settings, job_ids, restore.SETTLE_S + RESTORE_MARGIN_S)
            assert await service.stop(signal.SIGTERM) == 0, why
    why = f"{why}; {', '.join(service.history)}"
    reconciled = await trio.run_process(
        [sys.executable, "-m", "lumiku", "reconcile"],
        env=env,
        cwd=ROOT,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert reconciled.returncode == 0, (why, reconciled.stdout, reconciled.stderr)
    await check_outcome(settings, service, users, submitted, cancel_codes, why)


async def submit_all(
    client: httpx.AsyncClient, users: list[dict[str, Any]], plan: list[tuple[int, int]]
) -> list[dict[str, Any]]:
    """Queue the planned jobs, each user's in order, the users side by side."""
    submitted: list[dict[str, Any]] = [{} for _ in plan]

    async def submit_for(user_index: int) -> None:
        token = users[user_index]["token"]
        for n, (owner, ms) in enumerate(plan):
            if owner == user_index:
                payload = {"ms": ms, "steps": STEPS}
                submitted[n] = await submit(client, token, "demo.sleep", payload, CHAOS_COST)

    async with trio.open_nursery() as nursery:
        for user_index in range(len(users)):
            nursery.start_soon(submit_for, user_index)
    return submitted


async def cancel_all(
    base_url: str, picked: list[tuple[dict[str, Any], dict[str, Any]]]
) -> dict[str, int]:
    """Ask to cancel each job; the answer's status code by job id (200 cancelled at once,
    202 its worker was asked, 409 it had finished)."""
    codes = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        for user, job in picked:
            response = await client.post(
                f"/api/jobs/{job['id']}/cancel", headers=bearer(user["token"])
            )
            assert response.status_code in (200, 202, 409), response.text
            codes[job["id"]] = response.status_code
    return codes


async def wait_until_all_finished(base_url: str, count: int) -> None:
    """Return once every job is finished, by the queue counts of `/health/detailed` (one
    cheap request per look, so watching does not slow the service down)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        while True:
            response = await client.get("/health/detailed")
            counts = response.json().get("queue", {}).get("counts", {})
            if sum(counts.get(status, 0) for status in jobs.FINISHED) == count:
                return
            await trio.sleep(0.2)


async def check_outcome(
    settings: Settings,
    service: Restarts,
    users: list[dict[str, Any]],
    submitted: list[dict[str, Any]],
    cancel_codes: dict[str, int],
    why: str,
) -> None:
    user_ids = [uuid.UUID(user["user"]["id"]) for user in users]
    async with open_deps(settings, migrate=False) as deps:
        assert deps.redis is not None
        rows = {
            job["id"]: await jobs.get_job(
                deps.store, uuid.UUID(job["id"]), user_id=user_ids[0], is_admin=True
            )
            for job in submitted
        }
        entries = {user_id: await job_entries(deps.store, user_id) for user_id in user_ids}
        balances = {user_id: await ledger.balance(deps.store, user_id) for user_id in user_ids}
        streams = {job_id: await stream_events(deps.redis, job_id) for job_id in rows}

    statuses = Counter(job.status for job in rows.values())
    assert set(statuses) <= set(TERMINAL_EVENT), (why, statuses)
    # only the jobs we asked to cancel are cancelled; those cancelled while queued always are
    cancelled = {job_id for job_id, job in rows.items() if job.status == "cancelled"}
    assert cancelled <= set(cancel_codes), why
    assert {j for j, code in cancel_codes.items() if code == 200} <= cancelled, why
    # the only way to fail here is to be killed on every attempt
    failed = {job_id: job.error for job_id, job in rows.items() if job.status == "failed"}
    assert all(e is not None and e.code == "STALLED" for e in failed.values()), (why, failed)
    for job in rows.values():
        if job.status == "succeeded":
            assert job.result == {"slept_ms": job.payload["ms"], "attempt": job.attempt}, why

    charges: Counter[str] = Counter()
    refunds: dict[str, list[int]] = {}
    for user_id, user_entries in entries.items():
        for entry in user_entries:
            assert entry.ref_id in rows, (why, entry)
            assert rows[entry.ref_id].user_id == user_id, (why, entry)
            if entry.kind == "charge":
                assert entry.delta == -CHAOS_COST, (why, entry)
                charges[entry.ref_id] += 1
            else:
                assert entry.kind == "refund", (why, entry)
                refunds.setdefault(entry.ref_id, []).append(entry.delta)
    assert charges == Counter(dict.fromkeys(rows, 1)), why
    # nothing was delivered by a job that did not succeed: a full refund, exactly once
    unfinished_work = {j for j, job in rows.items() if job.status in ("failed", "cancelled")}
    assert refunds == {j: [CHAOS_COST] for j in unfinished_work}, why
    for job_id, job in rows.items():
        assert job.refunded == (CHAOS_COST if job_id in unfinished_work else 0), (why, job)
    for user_id in user_ids:
        owned = [j for j, job in rows.items() if job.user_id == user_id]
        refunded = sum(j in unfinished_work for j in owned)
        assert balances[user_id] == BONUS - CHAOS_COST * (len(owned) - refunded), why

    missing = {
        job_id: {
            "job": (job.status, job.attempt, job.event_seq, str(job.finished_at)),
            "stream": [(e["seq"], e["type"]) for e in streams[job_id]],
            "log": lines_about(service.instances, job_id),
        }
        for job_id, job in rows.items()
        if not terminal_types(streams[job_id])
    }
    restored = [line for i in service.instances for line in i.lines if "restore" in line["event"]]
    assert not missing, (why, f"{len(missing)} without a terminal event", missing, restored)
    for job_id, stream in streams.items():
        job = rows[job_id]
        assert terminal_types(stream) == [TERMINAL_EVENT[job.status]], (why, job_id, stream)
        # the terminal event is the last, numbered as the row says
        assert (stream[-1]["type"], stream[-1]["seq"]) == (
            TERMINAL_EVENT[job.status],
            job.event_seq,
        ), (why, job_id, stream)
        assert [e["seq"] for e in stream] == sorted({e["seq"] for e in stream}), (why, stream)
    # the kills hit work in progress: some jobs were started more than once
    restarted = [
        j for j, s in streams.items() if [e["type"] for e in s].count("generation:started") > 1
    ]
    assert restarted, why
