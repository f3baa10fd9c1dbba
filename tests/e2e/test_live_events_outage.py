"""A job's live events across a Redis outage, in the real service (SPEC §7, §15): Redis is
cut (connections reset, or silently dropped) while the job reports progress; the SSE client
on the instance running it gets every event regardless (local delivery), and once Redis is
back another instance's replay has the job's whole story, without a gap, with one terminal
event."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from lumiku import events, jobs
from lumiku.apps.registry import App, Registry
from lumiku.config import RedisSettings
from lumiku.events import RedisBus
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from lumiku.redis import open_redis
from lumiku.testing import TcpProxy
from tests.e2e.harness import (
    Service,
    bearer,
    make_settings,
    read_sse_frames,
    register,
    running_service,
)

GUARD_S = 30
POLL_S = 0.05


@attrs.define
class Gates:
    """Where the gated job stands, and when it may go on."""

    before_cut: trio.Event = attrs.field(factory=trio.Event)
    cut: trio.Event = attrs.field(factory=trio.Event)
    during_cut: trio.Event = attrs.field(factory=trio.Event)
    restored: trio.Event = attrs.field(factory=trio.Event)


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
async def service(
    tmp_path: Path, redis_proxy: tuple[TcpProxy, str], gates: Gates
) -> AsyncIterator[Service]:
    async def gated(ctx: JobContext) -> Outcome:
        await ctx.progress(1, 6, "before")
        gates.before_cut.set()
        await gates.cut.wait()
        for done in (2, 3, 4):
            await ctx.progress(done, 6, "during")
        gates.during_cut.set()
        await gates.restored.wait()
        for done in (5, 6):
            await ctx.progress(done, 6, "after")
        return Outcome({"steps": 6})

    registry = Registry([App("demo", "Demo", kinds=(JobKind("demo.gated", gated),))])
    _proxy, url = redis_proxy
    env = {
        "LUMIKU_REDIS_URL": url,
        "LUMIKU_JOBS_POLL_S": "0.05",
        "LUMIKU_JOBS_LEASE_S": "2",  # the reaper's pass (which flushes) every second
        "LUMIKU_RATELIMIT_ENABLED": "false",
    }
    with trio.fail_after(GUARD_S * 2):
        async with running_service(make_settings(tmp_path, env), apps=registry) as svc:
            yield svc


async def sse_frames(service: Service, job_id: str, token: str) -> list[dict[str, Any]]:
    url = f"/api/jobs/{job_id}/events"
    return await read_sse_frames(service.client, url, bearer(token), timeout_s=GUARD_S)


@pytest.mark.parametrize("mode", ["reset", "drop"])
async def test_a_redis_outage_during_a_jobs_progress_leaves_no_gap_in_any_replay(
    service: Service,
    redis_proxy: tuple[TcpProxy, str],
    redis_url: str,
    gates: Gates,
    mode: str,
) -> None:
    proxy, _url = redis_proxy
    user = await register(service.client, "outage@example.com")
    token = user["token"]
    frames: list[dict[str, Any]] = []
    with trio.fail_after(GUARD_S):
        response = await service.client.post(
            "/api/_test/jobs",
            json={"app": "demo", "kind": "demo.gated", "cost": 10},
            headers=bearer(token),
        )
        assert response.status_code == 202, response.text
        job_id = response.json()["job"]["id"]

        async with trio.open_nursery() as nursery:

            async def read() -> None:
                frames.extend(await sse_frames(service, job_id, token))

            nursery.start_soon(read)
            await gates.before_cut.wait()
            if mode == "reset":
                proxy.take_down()
            else:
                proxy.drop()  # silent, as a dead host: every publish waits for its bound
            gates.cut.set()
            await gates.during_cut.wait()
            proxy.bring_up()
            gates.restored.set()

        async with open_redis(RedisSettings(url=redis_url)) as client:
            assert client is not None
            elsewhere = RedisBus(client, "another-instance")
            while True:  # until the backlog went out (its next event, or a reaper pass)
                replayed = await elsewhere.replay(job_id, 0)
                if replayed and replayed[-1].is_terminal:
                    break
                await trio.sleep(POLL_S)

    job = await jobs_row(service, user, job_id)
    assert job.status == "succeeded"
    seqs = [event.seq for event in replayed]
    assert seqs == list(range(1, job.event_seq + 1)), replayed
    types = [event.type for event in replayed]
    assert types.count(events.PROGRESS) == 6
    assert [t for t in types if t in events.TERMINAL] == [events.COMPLETED]
    progress = [e.data["completed"] for e in replayed if e.type == events.PROGRESS]
    assert progress == [1, 2, 3, 4, 5, 6]
    # the SSE client on this instance got every event, the outage's too, and one ending
    assert frames[0]["event"] == events.SNAPSHOT
    sent = frames[1:]
    assert [frame["id"] for frame in sent] == list(range(sent[0]["id"], job.event_seq + 1))
    assert [f["event"] for f in sent if f["event"] in events.TERMINAL] == [events.COMPLETED]
    assert sent[-1]["event"] == events.COMPLETED
    assert [f["data"]["data"]["completed"] for f in sent if f["event"] == events.PROGRESS] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]


async def jobs_row(service: Service, user: dict[str, Any], job_id: str) -> jobs.Job:
    from lumiku.supervisor import open_deps

    async with open_deps(service.settings, migrate=False) as deps:
        return await jobs.get_job(
            deps.store, uuid.UUID(job_id), user_id=uuid.UUID(user["user"]["id"]), is_admin=False
        )
