"""Live job events over /api/ws: snapshot, replay after `after_seq`, live events, isolation."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from lumiku import jobs
from lumiku.apps.registry import App, Registry
from lumiku.http import sse
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from tests.e2e.harness import (
    Service,
    bearer,
    make_settings,
    read_sse_frames,
    register,
    running_service,
)
from tests.e2e.wsclient import WsClient, connect


async def three_steps(ctx: JobContext) -> Outcome:
    for done in range(1, 4):
        await ctx.progress(done, 3, f"step {done}")
    return Outcome({"steps": 3})


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    registry = Registry([App("demo", "Demo", kinds=(JobKind("demo.steps", three_steps),))])
    env = {"LUMIKU_JOBS_POLL_S": "0.05"}
    with trio.fail_after(60):
        async with running_service(make_settings(tmp_path, env), apps=registry) as svc:
            yield svc


async def submit(service: Service, user: dict[str, Any]) -> jobs.Job:
    """Queue a job through the service's own submission function (the test route)."""
    response = await service.client.post(
        "/api/_test/jobs",
        json={"app": "demo", "kind": "demo.steps", "cost": 10},
        headers=bearer(user["token"]),
    )
    assert response.status_code == 202, response.text
    return await _job(service, user, response.json()["job"]["id"])


async def _job(service: Service, user: dict[str, Any], job_id: str) -> jobs.Job:
    from lumiku.supervisor import open_deps

    async with open_deps(service.settings, migrate=False) as deps:
        return await jobs.get_job(
            deps.store, uuid.UUID(job_id), user_id=uuid.UUID(user["user"]["id"]), is_admin=False
        )


async def finished(service: Service, token: str, job: jobs.Job) -> None:
    with trio.fail_after(20):
        while True:
            body = (await service.client.get(f"/api/jobs/{job.id}", headers=bearer(token))).json()
            if body["job"]["status"] in jobs.FINISHED:
                return
            await trio.sleep(0.05)


async def messages(ws: WsClient, until_type: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with trio.fail_after(10):
        while not out or out[-1]["type"] != until_type:
            out.append(json.loads(await ws.receive()))
    return out


async def test_subscribe_sends_the_snapshot_then_replays_exactly_what_was_missed(
    service: Service,
) -> None:
    user = await register(service.client, "live@example.com")
    job = await submit(service, user)
    await finished(service, user["token"], job)
    async with connect(f"{service.ws_url}?token={user['token']}") as ws:
        assert json.loads(await ws.receive())["type"] == "ready"
        await ws.send(json.dumps({"type": "subscribe", "job_id": str(job.id), "after_seq": 0}))
        received = await messages(ws, "generation:completed")
    snapshot, *history = received
    assert snapshot["type"] == "generation:snapshot"
    assert snapshot["data"]["status"] == "succeeded"
    assert [e["seq"] for e in history] == list(range(1, snapshot["seq"] + 1))
    types = [e["type"] for e in history]
    assert types[0] == "generation:started" or types[0] == "generation:queued"
    assert types.count("generation:progress") == 3
    assert (
        sum(
            t in ("generation:completed", "generation:failed", "generation:cancelled")
            for t in types
        )
        == 1
    )
    # a client that saw up to seq 2 gets exactly the rest
    async with connect(f"{service.ws_url}?token={user['token']}") as ws:
        await ws.receive()
        await ws.send(json.dumps({"type": "subscribe", "job_id": str(job.id), "after_seq": 2}))
        resumed = await messages(ws, "generation:completed")
    assert [e["seq"] for e in resumed[1:]] == list(range(3, snapshot["seq"] + 1))


async def test_live_events_arrive_in_order_and_only_for_their_owner(service: Service) -> None:
    owner = await register(service.client, "owner-live@example.com")
    other = await register(service.client, "other-live@example.com")
    async with (
        connect(f"{service.ws_url}?token={owner['token']}") as mine,
        connect(f"{service.ws_url}?token={other['token']}") as theirs,
    ):
        await mine.receive()
        await theirs.receive()
        job = await submit(service, owner)
        live = await messages(mine, "generation:completed")
        seqs = [e["seq"] for e in live]
        assert seqs == sorted(seqs)
        assert all(e["job_id"] == str(job.id) for e in live)
        # the other user sees nothing of it, and cannot subscribe to it
        await theirs.send(json.dumps({"type": "subscribe", "job_id": str(job.id)}))
        answer = json.loads(await theirs.receive())
        assert answer == {"type": "error", "code": "NOT_FOUND", "detail": "No such job."}
        await theirs.send('{"type":"ping"}')
        assert json.loads(await theirs.receive()) == {"type": "pong"}


async def read_sse(service: Service, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """The events of one SSE stream, read until the server ends it."""
    with trio.fail_after(20):
        return await read_sse_frames(service.client, url, headers)


async def test_sse_streams_a_job_and_resumes_from_last_event_id(service: Service) -> None:
    user = await register(service.client, "sse@example.com")
    job = await submit(service, user)
    live = await read_sse(service, f"/api/jobs/{job.id}/events", bearer(user["token"]))
    assert live[0]["event"] == "generation:snapshot"
    assert "id" not in live[0]
    assert live[-1]["event"] == "generation:completed"  # the stream ends after the terminal event
    ids = [frame["id"] for frame in live[1:]]
    assert ids == sorted(ids)
    last = ids[-1]
    resumed = await read_sse(
        service, f"/api/jobs/{job.id}/events?token={user['token']}", {"Last-Event-ID": "2"}
    )
    assert [frame["id"] for frame in resumed[1:]] == list(range(3, last + 1))
    bad = await service.client.get(
        f"/api/jobs/{job.id}/events", headers={**bearer(user["token"]), "Last-Event-ID": "x"}
    )
    assert bad.status_code == 400
    other = await register(service.client, "sse-other@example.com")
    hidden = await service.client.get(f"/api/jobs/{job.id}/events", headers=bearer(other["token"]))
    assert hidden.status_code == 404


@pytest.mark.slow
async def test_sse_ends_with_the_rows_terminal_event_when_the_live_one_never_comes(
    service: Service,
) -> None:
    """The job runs "elsewhere" (this test claims and finishes it, and publishes nothing:
    its terminal event never reaches the service, as when it was published on another
    instance while the fan-out was down). The open stream reads the row again when idle
    for its keep-alive, and ends after the terminal event built from it."""
    from lumiku.credits.ledger import CreditsPolicy
    from lumiku.supervisor import open_deps

    user = await register(service.client, "sse-missed@example.com")
    async with open_deps(service.settings, migrate=False) as deps:
        submitted = await jobs.submit(
            deps.store,
            user_id=uuid.UUID(user["user"]["id"]),
            tags=(),
            app="demo",
            kind="demo.elsewhere",  # no worker of the service runs it
            payload={},
            cost=10,
            policy=CreditsPolicy.from_settings(deps.settings.credits),
        )
        (claimed,) = await jobs.claim(
            deps.store,
            worker_id="elsewhere",
            slots={"demo.elsewhere": 1},
            per_user_running=2,
            lease_s=60,
            now=datetime.now(UTC),
        )
    assert claimed.id == submitted.job.id
    frames: list[dict[str, Any]] = []
    started = trio.Event()

    async def read() -> None:
        url = f"/api/jobs/{claimed.id}/events"
        headers, timeout_s = bearer(user["token"]), sse.KEEPALIVE_S + 10
        async with service.client.stream(
            "GET", url, headers=headers, timeout=timeout_s
        ) as response:
            current: dict[str, Any] = {}
            async for line in response.aiter_lines():
                if line == "" and current:
                    frames.append(current)
                    current = {}
                    started.set()
                elif line.startswith("id: "):
                    current["id"] = int(line[4:])
                elif line.startswith("event: "):
                    current["event"] = line[7:]
                elif line.startswith("data: "):
                    current["data"] = json.loads(line[6:])

    with trio.fail_after(sse.KEEPALIVE_S + 10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await started.wait()  # the snapshot: the stream is subscribed
            async with open_deps(service.settings, migrate=False) as deps:
                done = await jobs.complete(deps.store, claimed.id, claimed.attempt, {"ok": 1})
            assert done is not None
    snapshot, *sent = frames
    assert (snapshot["event"], snapshot["data"]["data"]["status"]) == (
        "generation:snapshot",
        "running",
    )
    assert [(f["event"], f["id"]) for f in sent] == [("generation:completed", done.event_seq)]
    assert sent[0]["data"]["data"] == {"result": {"ok": 1}}
