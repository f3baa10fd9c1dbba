"""SSE streams after a SIGKILL and a restart, without Redis (SPEC §7: every job ends with
exactly one terminal event), on SQLite and on PostgreSQL.

The restarted process's in-process rings are empty: the jobs that had finished before the
kill have their terminal event only in their row, those killed mid-run are reaped and run
again, those still queued run for the first time. The stream of every job, opened after
the restart without `Last-Event-ID` and with one before its end, must end by itself after
exactly one terminal event, the one the job's final status names; a websocket subscribing
to each job gets exactly one terminal event too."""

from __future__ import annotations

import json
import signal
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from lumiku import events
from lumiku.config import Settings
from lumiku.jobs import get_job
from lumiku.supervisor import open_deps
from tests.e2e.chaos import JOB_TEST_ENV, open_restarts, settings_of, submit
from tests.e2e.harness import bearer, read_sse_frames, register
from tests.e2e.process import base_env
from tests.e2e.wsclient import connect

pytestmark = pytest.mark.slow

USERS = 3
SHORT_MS = 50
LONG_MS = 5000
COST = 5
TERMINAL_EVENT = {
    "succeeded": events.COMPLETED,
    "failed": events.FAILED,
    "cancelled": events.CANCELLED,
}
GUARD_S = 60
POLL_S = 0.05


async def job_status(client: httpx.AsyncClient, token: str, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/jobs/{job_id}", headers=bearer(token))
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()["job"]
    return job


async def wait_for_status(
    client: httpx.AsyncClient, token: str, job_id: str, statuses: set[str]
) -> None:
    """Poll over the API (a real process: the caller holds the fail_after guard)."""
    while (await job_status(client, token, job_id))["status"] not in statuses:
        await trio.sleep(POLL_S)


async def statuses(settings: Settings, jobs: list[dict[str, Any]]) -> dict[str, str]:
    """The jobs' statuses as their rows hold them (read while no service runs)."""
    async with open_deps(settings, migrate=False) as deps:
        return {
            job["id"]: (
                await get_job(
                    deps.store, uuid.UUID(job["id"]), user_id=uuid.UUID(int=0), is_admin=True
                )
            ).status
            for job in jobs
        }


async def sse_frames(
    client: httpx.AsyncClient, job_id: str, token: str, last_event_id: int | None
) -> list[dict[str, Any]]:
    """The frames of the job's SSE stream, read until the server ends it."""
    headers = bearer(token)
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    return await read_sse_frames(client, f"/api/jobs/{job_id}/events", headers)


async def test_after_a_sigkill_every_jobs_sse_stream_ends_after_one_terminal_event(
    tmp_path: Path, database_url: str
) -> None:
    env = base_env(
        tmp_path,
        {
            **JOB_TEST_ENV,
            "LUMIKU_DATABASE_URL": database_url,
            "LUMIKU_JOBS_LEASE_S": "2",
            "LUMIKU_JOBS_POLL_S": "0.1",
            "LUMIKU_JOBS_BACKOFF_S": "0.2",
            "LUMIKU_JOBS_BACKOFF_MAX_S": "0.5",
        },
    )
    assert "LUMIKU_REDIS_URL" not in env
    streams: dict[tuple[str, int | None], list[dict[str, Any]]] = {}
    sockets: dict[str, list[dict[str, Any]]] = {}
    with trio.fail_after(GUARD_S):
        async with open_restarts(env) as service:
            await service.start()
            async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as client:
                users = [await register(client, f"sse-kill{n}@example.com") for n in range(USERS)]
                # per user (2 run at once): one finishes before the kill, two are killed
                # mid-run, one is still queued behind them
                plan = [SHORT_MS, LONG_MS, LONG_MS, SHORT_MS]
                jobs = [
                    (user, await submit(client, user["token"], "demo.sleep", {"ms": ms}, COST))
                    for user in users
                    for ms in plan
                ]
                for n, (user, job) in enumerate(jobs):
                    wanted = {"succeeded"} if n % 4 == 0 else {"running"}
                    if n % 4 != 3:
                        await wait_for_status(client, user["token"], job["id"], wanted)
            assert await service.stop(signal.SIGKILL) == -signal.SIGKILL
            before = await statuses(settings_of(env, tmp_path), [job for _user, job in jobs])

            await service.start()
            async with (
                httpx.AsyncClient(base_url=service.base_url, timeout=GUARD_S) as client,
                trio.open_nursery() as nursery,
            ):

                async def read(job_id: str, token: str, last_event_id: int | None) -> None:
                    streams[job_id, last_event_id] = await sse_frames(
                        client, job_id, token, last_event_id
                    )

                for user, job in jobs:
                    for last_event_id in (None, 1):  # 1: the generation:queued event
                        nursery.start_soon(read, job["id"], user["token"], last_event_id)
                for user in users:
                    owned = [job["id"] for owner, job in jobs if owner is user]
                    nursery.start_soon(watch, service.base_url, user["token"], owned, sockets)
            async with httpx.AsyncClient(base_url=service.base_url, timeout=10) as client:
                after = {
                    job["id"]: await job_status(client, user["token"], job["id"])
                    for user, job in jobs
                }
            assert await service.stop(signal.SIGTERM) == 0

    # the kill hit each kind of job: finished, running (unless a LONG_MS job finished in
    # the moment between being seen running and the kill), queued
    assert [before[job["id"]] for _user, job in jobs[::4]] == ["succeeded"] * USERS
    assert Counter(before.values())["running"] > 0, before
    assert set(before.values()) <= {"succeeded", "running", "queued"}, before
    for (job_id, last_event_id), frames in streams.items():
        why = (job_id, last_event_id, before[job_id], frames)
        assert frames[0]["event"] == events.SNAPSHOT, why
        sent = frames[1:]
        terminal = [frame for frame in sent if frame["event"] in events.TERMINAL]
        assert len(terminal) == 1, why
        assert sent[-1] is terminal[0], why  # the stream ended right after it
        assert terminal[0]["event"] == TERMINAL_EVENT[after[job_id]["status"]], why
        assert terminal[0]["data"]["job_id"] == job_id, why
        ids = [frame["id"] for frame in sent]
        assert ids == sorted(set(ids)), why
        assert all(n > (last_event_id or 0) for n in ids), why
        assert terminal[0]["id"] == terminal[0]["data"]["seq"], why
    assert {job["id"]: job["status"] for job in after.values()} == dict.fromkeys(
        before, "succeeded"
    )
    # a websocket subscribing to each job after the restart: the same, one terminal event
    for job_id, received in sockets.items():
        why = (job_id, before[job_id], received)
        assert received[0]["type"] == events.SNAPSHOT, why
        terminal = [e for e in received if e["type"] in events.TERMINAL]
        assert [e["type"] for e in terminal] == [events.COMPLETED], why
        seqs = [e["seq"] for e in received[1:]]
        assert seqs == sorted(set(seqs)), why
    assert set(sockets) == set(before)


async def watch(
    base_url: str, token: str, job_ids: list[str], sockets: dict[str, list[dict[str, Any]]]
) -> None:
    """Subscribe to each of `job_ids` on one websocket and record its messages by job until
    each had a terminal event, then until a ping's pong (what was queued behind them)."""
    async with connect(f"ws{base_url.removeprefix('http')}/api/ws?token={token}") as ws:
        assert json.loads(await ws.receive())["type"] == "ready"
        for job_id in job_ids:
            sockets[job_id] = []
            await ws.send(json.dumps({"type": "subscribe", "job_id": job_id, "after_seq": 0}))
        ended: set[str] = set()
        pinged = False
        while True:
            message = json.loads(await ws.receive())
            if message["type"] == "pong":
                return
            if message["type"] == "ping":
                continue
            sockets[message["job_id"]].append(message)
            if message["type"] in events.TERMINAL:
                ended.add(message["job_id"])
            if ended == set(job_ids) and not pinged:
                pinged = True
                await ws.send('{"type":"ping"}')
