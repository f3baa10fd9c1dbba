"""Clients that stop reading, end to end (SPEC §7): a websocket that never reads again does
not hold the shutdown (hypercorn shields its socket writes from cancellation, so the kernel
drops the connection after `http.send_stall_timeout_s` and the blocked write fails), and an
SSE stream that fell behind ends cleanly, closing chunk included, instead of failing in the
ASGI server.

One in-process service on SQLite. The clients shrink their kernel receive buffer, so the
server's send blocks after a handful of large events. The in-process bus publishes without
a checkpoint, so a job publishing a whole buffer's worth at once would overflow it before
the send even started: each test's job first publishes less than a buffer, the test waits
until every task of the run is blocked (the sender then can only be blocked in its write:
it has events left and nothing else to wait for), and only then goes on.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import h11
import trio
import trio.testing

from lumiku import events
from lumiku.apps.registry import App, Registry
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from tests.e2e.harness import Service, bearer, make_settings, register, running_service
from tests.e2e.test_live_events_scaleout import (
    FLOOD_STAGE_BYTES,
    STALLED_RCVBUF_BYTES,
    greeted,
    sse_frames,
    submit,
)
from tests.e2e.wsclient import connect

GRACE_S: Final = 3.0
SEND_STALL_TIMEOUT_S: Final = 1.0
# A shutdown may take the grace (an idle keep-alive connection can hold the drain that long)
# plus its own bookkeeping; never another wait for the stalled client.
STOP_SLACK_S: Final = 3.0
# Half a subscription buffer: never overflows it, yet some 25 times what the kernel buffers
# of a connection with a 4 KiB SO_RCVBUF take of events this size (about 5), so the send
# blocks with most of them still to write.
FILL_EVENTS: Final = events.BUFFER_EVENTS // 2
# Published while the send is blocked: alone enough to overflow the buffer behind it.
BEHIND_EVENTS: Final = events.BUFFER_EVENTS + 16


def env_for(sqlite_url: str, **extra: str) -> dict[str, str]:
    return {"LUMIKU_DATABASE_URL": sqlite_url, "LUMIKU_JOBS_POLL_S": "0.05", **extra}


async def wait_status(service: Service, token: str, job_id: str, status: str) -> None:
    """Poll the job until it has `status`."""
    while True:
        response = await service.client.get(f"/api/jobs/{job_id}", headers=bearer(token))
        if response.json()["job"]["status"] == status:
            return
        await trio.sleep(0.05)


async def wait_stopped(service: Service) -> dict[str, Any]:
    """The supervisor's last log line, `service.stopped`, once written."""
    while True:
        for line in service.log_lines():
            if line.get("event") == "service.stopped":
                return line
        await trio.sleep(0.05)


def logged(service: Service, event: str) -> list[int]:
    """The positions of `event` in the log."""
    return [i for i, line in enumerate(service.log_lines()) if line.get("event") == event]


def errors_logged(service: Service) -> list[dict[str, Any]]:
    return [line for line in service.log_lines() if line.get("level") in ("error", "critical")]


def paced_flood_registry(waiting: trio.Event, fill: trio.Event, behind: trio.Event) -> Registry:
    """`demo.paced_flood`: `payload.events` progress reports with a FLOOD_STAGE_BYTES long
    stage; sets `waiting`, reports the first FILL_EVENTS once `fill` is set, the rest once
    `behind` is."""

    async def paced_flood(ctx: JobContext) -> Outcome:
        total = int(ctx.payload["events"])
        stage = "s" * FLOOD_STAGE_BYTES
        waiting.set()
        await fill.wait()
        for done in range(1, total + 1):
            if done == FILL_EVENTS + 1:
                await behind.wait()
            await ctx.progress(done, total, stage)
        return Outcome({"events": total})

    return Registry([App("demo", "Demo", kinds=(JobKind("demo.paced_flood", paced_flood),))])


async def test_a_client_that_never_reads_again_does_not_hold_the_shutdown(
    tmp_path: Path, sqlite_url: str
) -> None:
    env = env_for(
        sqlite_url,
        LUMIKU_SHUTDOWN_GRACE_S=str(GRACE_S),
        LUMIKU_HTTP_SEND_STALL_TIMEOUT_S=str(SEND_STALL_TIMEOUT_S),
    )
    waiting, fill = trio.Event(), trio.Event()
    apps = paced_flood_registry(waiting, fill, trio.Event())  # never reaches the 2nd gate
    # Bounds the service's exit too: should the inner bound fail with the write still
    # blocked, leaving `connect` closes the client's socket, the kernel resets the
    # connection and the write fails, so the service stops and the test reports the failure.
    with trio.fail_after(20):
        async with running_service(make_settings(tmp_path, env), apps=apps) as service:
            user = await register(service.client, "stalled@example.com")
            url = f"{service.ws_url}?token={user['token']}"
            async with connect(url, receive_buffer_bytes=STALLED_RCVBUF_BYTES) as stalled:
                await greeted(stalled)  # and from now on it reads nothing
                await submit(service, user["token"], FILL_EVENTS, kind="demo.paced_flood")
                await waiting.wait()
                fill.set()
                await trio.testing.wait_all_tasks_blocked()  # the socket's send is blocked
                # At once: the kernel drops the connection a second after the stall began,
                # and the shutdown is to find it still stalled.
                service.state.request("test")
                with trio.fail_after(GRACE_S + STOP_SLACK_S):
                    stopped = await wait_stopped(service)
    assert stopped["exit_code"] == 0
    # The socket was still open when the shutdown began, and its handler then finished.
    [draining] = logged(service, "service.draining")
    [socket_ended] = logged(service, "ws.access")
    assert draining < socket_ended
    assert errors_logged(service) == []


async def open_small_window_stream(base_url: str) -> trio.SocketStream:
    """A TCP stream to `base_url` (http://host:port) whose kernel receive buffer holds a
    few KiB (SO_RCVBUF is set before connecting: the window scale is agreed then)."""
    parts = urlsplit(base_url)
    assert parts.hostname is not None
    assert parts.port is not None
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RCVBUF_BYTES)
        await sock.connect((parts.hostname, parts.port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def next_event(stream: trio.SocketStream, http: h11.Connection) -> Any:
    """The next h11 event of the response. h11 raises `RemoteProtocolError` should the
    connection close in the middle of the chunked body."""
    while True:
        event = http.next_event()
        if event is not h11.NEED_DATA:
            return event
        http.receive_data(await stream.receive_some(65536))


def parse_frames(body: bytes) -> list[dict[str, Any]]:
    """The SSE frames of a body: the `id` (when sent) and `data` of each."""
    frames = []
    for block in body.decode().split("\n\n"):
        frame: dict[str, Any] = {}
        for line in block.split("\n"):
            if line.startswith("id: "):
                frame["id"] = int(line[4:])
            elif line.startswith("data: "):
                frame["data"] = json.loads(line[6:])
        if frame:
            frames.append(frame)
    return frames


async def test_an_sse_client_that_falls_behind_gets_a_clean_end_of_stream(
    tmp_path: Path, sqlite_url: str
) -> None:
    waiting, fill, behind = trio.Event(), trio.Event(), trio.Event()
    total = FILL_EVENTS + BEHIND_EVENTS
    settings = make_settings(tmp_path, env_for(sqlite_url))
    apps = paced_flood_registry(waiting, fill, behind)
    with trio.fail_after(15):
        async with running_service(settings, apps=apps) as service:
            user = await register(service.client, "sse-stalled@example.com")
            token = user["token"]
            job_id = await submit(service, token, total, kind="demo.paced_flood")
            target = f"/api/jobs/{job_id}/events"
            async with await open_small_window_stream(service.base_url) as stream:
                http = h11.Connection(h11.CLIENT)
                request = h11.Request(
                    method="GET",
                    target=target,
                    headers=[("Host", urlsplit(service.base_url).netloc), *bearer(token).items()],
                )
                await stream.send_all(http.send(request) + http.send(h11.EndOfMessage()))
                response = await next_event(stream, http)
                assert isinstance(response, h11.Response)
                assert response.status_code == 200
                # Read up to the end of the snapshot: the stream is subscribed by then.
                body = b""
                while b"\n\n" not in body:
                    data = await next_event(stream, http)
                    assert isinstance(data, h11.Data)
                    body += data.data
                # From now on read nothing: the send blocks a few events into the first
                # batch, and the second batch overflows the buffer behind it. (The job must
                # be at its gate first: while it still waits for the database, in a thread,
                # every task may look blocked.)
                await waiting.wait()
                fill.set()
                await trio.testing.wait_all_tasks_blocked()
                behind.set()
                await wait_status(service, token, job_id, "succeeded")
                # Reading again completes the blocked send; the stream then finds its
                # buffer overflowed and ends: h11 sees the closing chunk.
                while not isinstance(event := await next_event(stream, http), h11.EndOfMessage):
                    assert isinstance(event, h11.Data)
                    body += event.data

            await service.wait_for_log(event="sse.overflowed", job_id=job_id)
            snapshot, *late = parse_frames(body)
            assert snapshot["data"]["type"] == events.SNAPSHOT
            # What the kernel held and the one send that was blocked, in order: fewer than
            # the first batch (the send did block), the terminal event not among them.
            assert [f["id"] for f in late] == list(range(1, len(late) + 1))
            assert 2 < len(late) < 2 + FILL_EVENTS  # after queued and started
            assert all(f["data"]["type"] not in events.TERMINAL for f in late)

            # As EventSource would: reconnect with Last-Event-ID; the replay fills the gap.
            _, *rest = await sse_frames(
                service, target, {**bearer(token), "Last-Event-ID": str(len(late))}, lambda _: None
            )
            assert [f["id"] for f in rest] == list(range(len(late) + 1, total + 4))
            assert rest[-1]["data"]["type"] == events.COMPLETED

    assert "Error in ASGI Framework" not in service.log_text()
    assert errors_logged(service) == []
