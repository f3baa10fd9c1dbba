"""Live events in the production shape, PostgreSQL + Redis (SPEC §7, §15): a client that
stops reading is cut off with 1013 without slowing anyone else; events cross instances
through Redis (websocket and SSE); with Redis down the instance that runs a job still
delivers its events and replays them from its own ring.

Two instances in one test share the database, the Redis and the JWT secret. Only instance A
has the job kind: an instance never claims a kind its registry lacks (`worker._claim`), so
every job runs on A and reaches B's clients through Redis alone.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any, Final

import trio

from lumiku import events
from lumiku.apps.registry import App, Registry
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from lumiku.testing import TcpProxy
from tests.e2e.harness import (
    Service,
    bearer,
    make_settings,
    read_sse_frames,
    register,
    running_service,
)
from tests.e2e.wsclient import Closed, WsClient, connect

TERMINAL: Final = ("generation:completed", "generation:failed", "generation:cancelled")
# Enough progress events that a client which stopped reading overflows its 256-event buffer
# even after the kernel buffers took their share: about 8 events of this size with a 4 KiB
# SO_RCVBUF, some 40 without it. Few large events rather than many small ones: each costs a
# database transaction.
FLOOD_EVENTS: Final = events.BUFFER_EVENTS + 64
FLOOD_STAGE_BYTES: Final = 4000
STALLED_RCVBUF_BYTES: Final = 4096
# Generous on purpose: on an idle machine every event arrives within milliseconds. A reader
# held up by the stalled client would not be a little late but stuck for as long as the
# stalled client does not read — until the test's fail_after.
STALL_BOUND_S: Final = 2.0


async def flood(ctx: JobContext) -> Outcome:
    """`payload.events` progress events, each with a `payload.stage_bytes` long stage."""
    total = int(ctx.payload["events"])
    stage = "s" * int(ctx.payload.get("stage_bytes", 8))
    for done in range(1, total + 1):
        await ctx.progress(done, total, stage)
    return Outcome({"events": total})


def flood_registry() -> Registry:
    return Registry([App("demo", "Demo", kinds=(JobKind("demo.flood", flood),))])


def scaleout_env(postgres_url: str, redis_url: str, jwt_secret: str) -> dict[str, str]:
    # Rate limits off: their counters live in the shared test Redis, and they are not what
    # these tests are about.
    return {
        "LUMIKU_DATABASE_URL": postgres_url,
        "LUMIKU_REDIS_URL": redis_url,
        "LUMIKU_AUTH_JWT_SECRET": jwt_secret,
        "LUMIKU_JOBS_POLL_S": "0.05",
        "LUMIKU_RATELIMIT_ENABLED": "false",
    }


@contextlib.asynccontextmanager
async def instance(
    tmp_path: Path, name: str, env: dict[str, str], apps: Registry
) -> AsyncIterator[Service]:
    settings = make_settings(tmp_path / name, env)
    async with running_service(settings, apps=apps) as service:
        yield service


async def submit(
    service: Service, token: str, progress_events: int, kind: str = "demo.flood", **payload: Any
) -> str:
    """Queue a job through the test route; its id."""
    response = await service.client.post(
        "/api/_test/jobs",
        json={
            "app": "demo",
            "kind": kind,
            "cost": 10,
            "payload": {"events": progress_events, **payload},
        },
        headers=bearer(token),
    )
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job"]["id"]
    return job_id


async def until_terminal(ws: WsClient) -> list[tuple[dict[str, Any], datetime]]:
    """Every message up to and including the first terminal event, each with when it came."""
    out: list[tuple[dict[str, Any], datetime]] = []
    while not out or out[-1][0]["type"] not in TERMINAL:
        message = json.loads(await ws.receive())
        out.append((message, datetime.now(UTC)))
    return out


def assert_whole_story(received: list[dict[str, Any]], job_id: str, progress: int) -> None:
    """One job's events from queued to its one terminal event, each seq once and in order."""
    assert all(e["job_id"] == job_id for e in received)
    assert [e["seq"] for e in received] == list(range(1, len(received) + 1))
    types = [e["type"] for e in received]
    assert types == [
        "generation:queued",
        "generation:started",
        *["generation:progress"] * progress,
        "generation:completed",
    ]


def ts(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["ts"])


async def greeted(ws: WsClient) -> None:
    """Wait for `ready`: from then on the socket receives the user's events."""
    assert json.loads(await ws.receive())["type"] == "ready"


async def until_closed(ws: WsClient) -> tuple[list[dict[str, Any]], Closed]:
    """Every message still coming, and how the server closed the connection."""
    out: list[dict[str, Any]] = []
    try:
        while True:
            out.append(json.loads(await ws.receive()))
    except Closed as closed:
        return out, closed


async def resumed(
    service: Service, token: str, job_id: str, after_seq: int
) -> list[dict[str, Any]]:
    """What a new socket gets for `subscribe` after `after_seq`: snapshot, then the rest."""
    async with connect(f"{service.ws_url}?token={token}") as ws:
        await greeted(ws)
        await ws.send(json.dumps({"type": "subscribe", "job_id": job_id, "after_seq": after_seq}))
        return [e for e, _ in await until_terminal(ws)]


async def redis_seen_down(service: Service) -> None:
    """Wait until the service's own health check finds Redis unreachable."""
    while True:
        body = (await service.client.get("/health/detailed")).json()
        if body["status"] == "degraded" and body["checks"]["redis"]["status"] != "ok":
            return
        await trio.sleep(0.05)


async def progress_reached(service: Service, token: str, job_id: str, completed: int) -> None:
    """Wait until the job's row shows `completed` steps done."""
    while True:
        response = await service.client.get(f"/api/jobs/{job_id}", headers=bearer(token))
        if response.json()["job"]["progress"]["completed"] >= completed:
            return
        await trio.sleep(0.05)


def gated_registry(gate: trio.Event) -> Registry:
    """`demo.gated`: progress 1/2, wait for `gate`, progress 2/2, done."""

    async def gated(ctx: JobContext) -> Outcome:
        await ctx.progress(1, 2, "before the gate")
        await gate.wait()
        await ctx.progress(2, 2, "after the gate")
        return Outcome({"gated": True})

    return Registry([App("demo", "Demo", kinds=(JobKind("demo.gated", gated),))])


async def sse_frames(
    service: Service, url: str, headers: dict[str, str], on_frame: Callable[[dict[str, Any]], None]
) -> list[dict[str, Any]]:
    """The frames of one SSE stream, read until the server ends it; `on_frame` sees each."""
    return await read_sse_frames(service.client, url, headers, on_frame=on_frame)


async def test_a_client_that_stops_reading_is_closed_with_1013_and_nobody_waits_for_it(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env = scaleout_env(postgres_url, redis_url, secrets.token_urlsafe(48))
    with trio.fail_after(30):
        async with instance(tmp_path, "a", env, flood_registry()) as service:
            user = await register(service.client, "flood@example.com")
            url = f"{service.ws_url}?token={user['token']}"
            async with (
                connect(url) as reader,
                connect(url, receive_buffer_bytes=STALLED_RCVBUF_BYTES) as stalled,
            ):
                await greeted(reader)
                await greeted(stalled)  # and from now on it reads nothing until the job is over
                job_id = await submit(
                    service, user["token"], FLOOD_EVENTS, stage_bytes=FLOOD_STAGE_BYTES
                )
                timed = await until_terminal(reader)
                late, closed = await until_closed(stalled)

            received = [e for e, _ in timed]
            assert_whole_story(received, job_id, FLOOD_EVENTS)
            # Delivery to the reader (publish → its socket) never stalled, and neither did
            # the publisher (between one event and the next).
            assert max((at - ts(e)).total_seconds() for e, at in timed) < STALL_BOUND_S
            assert max((ts(b) - ts(a)).total_seconds() for a, b in pairwise(received)) < (
                STALL_BOUND_S
            )

            # The server's send to the stalled client blocked once the kernel buffers were
            # full (hypercorn writes straight to the socket) and its 256-event buffer
            # overflowed behind that send. The server acts on the overflow only when that
            # send completes, that is once the client reads again: it then gets what the
            # kernel held, in order, and 1013. A whole buffer's worth and the rest never
            # reached it.
            assert closed.code == 1013
            assert late == received[: len(late)]
            assert len(received) - len(late) > events.BUFFER_EVENTS

            # As the close reason says: reconnect and resume with after_seq.
            snapshot, *rest = await resumed(service, user["token"], job_id, len(late))
            assert snapshot["type"] == "generation:snapshot"
            assert snapshot["data"]["status"] == "succeeded"
            assert snapshot["seq"] == received[-1]["seq"]
            assert [*late, *rest] == received


async def test_a_job_on_instance_a_streams_to_a_socket_on_instance_b_through_redis(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env = scaleout_env(postgres_url, redis_url, secrets.token_urlsafe(48))
    with trio.fail_after(30):
        async with (
            instance(tmp_path, "a", env, flood_registry()) as a,
            instance(tmp_path, "b", env, Registry()) as b,
        ):
            user = await register(a.client, "across@example.com")
            token = user["token"]
            async with (
                connect(f"{a.ws_url}?token={token}") as on_a,
                connect(f"{b.ws_url}?token={token}") as on_b,
            ):
                await greeted(on_a)
                await greeted(on_b)
                job_id = await submit(a, token, 3)
                via_redis = [e for e, _ in await until_terminal(on_b)]
                local = [e for e, _ in await until_terminal(on_a)]
            assert_whole_story(via_redis, job_id, 3)
            assert via_redis == local  # the very events A published: same seq, ts and data

            # A socket opened on B later catches up from the job's Redis stream (B never
            # published any of it, so its own ring has nothing).
            snapshot, *rest = await resumed(b, token, job_id, 2)
            assert snapshot["type"] == "generation:snapshot"
            assert rest == local[2:]


async def test_with_redis_down_the_instance_running_the_job_still_delivers_and_replays(
    tmp_path: Path, postgres_url: str, redis_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, redis_url = redis_proxy
    env = scaleout_env(postgres_url, redis_url, secrets.token_urlsafe(48))
    with trio.fail_after(30):
        async with instance(tmp_path, "a", env, flood_registry()) as service:
            user = await register(service.client, "outage@example.com")
            token = user["token"]
            async with connect(f"{service.ws_url}?token={token}") as ws:
                await greeted(ws)
                proxy.take_down()
                await redis_seen_down(service)
                job_id = await submit(service, token, 3)
                live = [e for e, _ in await until_terminal(ws)]
            assert_whole_story(live, job_id, 3)
            # Redis really was out of the path: every publish of the job failed there, or was
            # skipped by the bus's breaker after a failure.
            not_published = ("events.publish_failed", "events.publish_skipped")
            with trio.fail_after(5):
                while True:
                    failed = {
                        line["seq"]
                        for line in service.log_lines()
                        if line.get("event") in not_published and line.get("job_id") == job_id
                    }
                    if live[-1]["seq"] in failed:
                        break
                    await trio.sleep(0.01)
            assert failed == {e["seq"] for e in live}

            # A late client recovers through the snapshot and this instance's ring.
            snapshot, *rest = await resumed(service, token, job_id, 1)
            assert snapshot["type"] == "generation:snapshot"
            assert snapshot["data"]["status"] == "succeeded"
            assert rest == live[1:]
            await service.wait_for_log(event="events.replay_degraded", job_id=job_id)


async def test_sse_on_instance_b_resumes_from_redis_and_follows_a_job_running_on_a(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    env = scaleout_env(postgres_url, redis_url, secrets.token_urlsafe(48))
    gate = trio.Event()
    with trio.fail_after(30):
        async with (
            instance(tmp_path, "a", env, gated_registry(gate)) as a,
            instance(tmp_path, "b", env, Registry()) as b,
        ):
            user = await register(a.client, "sse-across@example.com")
            token = user["token"]
            job_id = await submit(a, token, 0, kind="demo.gated")
            await progress_reached(b, token, job_id, 1)  # A is at the gate

            def open_gate_after_seq_3(frame: dict[str, Any]) -> None:
                if frame.get("id") == 3:
                    gate.set()

            frames = await sse_frames(
                b,
                f"/api/jobs/{job_id}/events",
                {**bearer(token), "Last-Event-ID": "1"},
                open_gate_after_seq_3,
            )
    snapshot, *resumed_frames = frames
    assert "id" not in snapshot
    assert snapshot["data"]["type"] == "generation:snapshot"
    # 2 was in the job's Redis stream before B's stream began (B's own ring never holds A's
    # events), 3 there too or live; 4-5 were published on A only after B had sent 3, so they
    # came live through B's one Redis subscription.
    assert [f["id"] for f in resumed_frames] == [2, 3, 4, 5]
    assert [f["data"]["seq"] for f in resumed_frames] == [2, 3, 4, 5]
    assert [f["data"]["type"] for f in resumed_frames] == [
        "generation:started",
        "generation:progress",
        "generation:progress",
        "generation:completed",
    ]
    assert [f["data"]["data"].get("stage") for f in resumed_frames[1:3]] == [
        "before the gate",
        "after the gate",
    ]
