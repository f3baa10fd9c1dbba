"""The drain of the real process on SIGTERM: websockets closed with 1001 at once, every
request the server received answered, readiness `draining` while the listener stays open."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path
from typing import Final

import attrs
import h11
import httpx
import pytest
import trio

from tests.e2e.harness import register
from tests.e2e.process import base_env, start
from tests.e2e.test_process import port_of
from tests.e2e.wsclient import Closed, WsClient, connect

pytestmark = pytest.mark.slow

CLIENTS: Final = 20
WARM_UP: Final = 400  # answers before the signal


async def expect_close(ws: WsClient) -> int:
    """The close code the server sends next (any other message first is a failure)."""
    try:
        message = await ws.receive()
    except Closed as closed:
        return closed.code
    raise AssertionError(f"expected a close, got {message}")


async def test_idle_service_closes_every_websocket_with_1001_and_exits_at_once(
    tmp_path: Path,
) -> None:
    """An unauthenticated socket (waiting for its auth message), an authenticated one and an
    idle keep-alive HTTP connection: SIGTERM closes both sockets with 1001 and the process
    exits 0 within a second — not after `auth.ws_auth_timeout_s`, not with 4401."""
    env = base_env(tmp_path, {"LUMIKU_AUTH_WS_AUTH_TIMEOUT_S": "10"})
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            service = await start(nursery, env, args=("-m", "lumiku", "serve"))
            port = port_of(await service.wait_for("service.ready"))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                token = (await register(client, "idle@example.com"))["token"]
                url = f"ws://127.0.0.1:{port}/api/ws"
                async with connect(url) as anonymous, connect(f"{url}?token={token}") as authed:
                    assert json.loads(await authed.receive())["type"] == "ready"
                    signalled_at = time.monotonic()
                    service.signal(signal.SIGTERM)
                    codes = [await expect_close(anonymous), await expect_close(authed)]
                    exit_code = await service.process.wait()
                    elapsed = time.monotonic() - signalled_at
    assert codes == [1001, 1001]
    assert exit_code == 0
    assert elapsed < 1.0
    assert service.lines[-1]["event"] == "service.stopped"


@attrs.define
class Tally:
    """What the hammering clients saw. A request is `dropped` when it was written on a
    connection whose previous answer did not say `Connection: close` and got no answer at
    all: the server had promised to read it. `unaccepted` counts first requests on new
    connections that got nothing: a connection completed by the kernel between the server's
    last accept and the listener's close (it serves its backlog on the way out, so this is
    rare, but no server can rule it out); `refused` counts connections refused outright."""

    answered: int = 0
    closing_answers: int = 0  # answers saying Connection: close
    dropped: int = 0
    unaccepted: int = 0
    refused: int = 0
    broken: list[str] = attrs.field(factory=list)  # partial or wrong answers
    started: trio.Event = attrs.field(factory=trio.Event)


ECHO: Final = "/api/_test/echo"


async def hammer(port: int, client: int, tally: Tally) -> None:
    """Keep-alive POSTs until the service refuses connections: reconnect after an answer
    saying `Connection: close` or a connection that ended without one."""
    sent = 0
    while True:
        try:
            stream = await trio.open_tcp_stream("127.0.0.1", port)
        except OSError:
            tally.refused += 1
            return
        async with stream:
            connection = h11.Connection(h11.CLIENT)
            fresh = True
            while True:
                sent += 1
                body = json.dumps({"client": client, "n": sent}).encode()
                request = h11.Request(
                    method="POST",
                    target=ECHO,
                    headers=[
                        ("host", "lumiku"),
                        ("content-type", "application/json"),
                        ("content-length", str(len(body))),
                    ],
                )
                try:
                    await stream.send_all(
                        connection.send(request)
                        + connection.send(h11.Data(data=body))
                        + connection.send(h11.EndOfMessage())
                    )
                    answer = await read_answer(stream, connection)
                except (trio.BrokenResourceError, ConnectionError):
                    answer = None
                if answer is None:  # nothing came back
                    if fresh:
                        tally.unaccepted += 1
                    else:
                        tally.dropped += 1
                    break
                if isinstance(answer, str):
                    tally.broken.append(answer)
                    return
                tally.answered += 1
                if tally.answered == WARM_UP:
                    tally.started.set()
                fresh = False
                if answer:
                    tally.closing_answers += 1
                    break
                connection.start_next_cycle()


async def read_answer(stream: trio.SocketStream, connection: h11.Connection) -> bool | str | None:
    """Whether the answer said Connection: close; None when the connection ended before any
    byte of an answer; a description of anything else (a partial or wrong answer)."""
    response: h11.Response | None = None
    content = b""
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            if not data and response is None and not content:
                return None
            connection.receive_data(data)
        elif isinstance(event, h11.Response):
            response = event
        elif isinstance(event, h11.Data):
            content += event.data
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None
            if response.status_code != 200 or b'"received"' not in content:
                return f"{response.status_code} {content[:200]!r}"
            return any(
                name == b"connection" and value.lower() == b"close"
                for name, value in response.headers
            )
        else:
            return f"unexpected {event!r}"


@pytest.mark.parametrize("readiness_delay_s", [0.0, 0.5])
async def test_sigterm_under_keep_alive_load_answers_every_request_received(
    tmp_path: Path, readiness_delay_s: float
) -> None:
    """Twenty keep-alive clients hammer a route through SIGTERM: no request written on a
    connection the server kept open goes unanswered, every request the app handled was
    answered, answers during the drain say `Connection: close`, and the process exits 0."""
    env = base_env(tmp_path, {"LUMIKU_SHUTDOWN_READINESS_DELAY_S": str(readiness_delay_s)})
    tally = Tally()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            service = await start(nursery, env)
            port = port_of(await service.wait_for("service.ready"))
            async with trio.open_nursery() as clients:
                for client in range(CLIENTS):
                    clients.start_soon(hammer, port, client, tally)
                await tally.started.wait()
                service.signal(signal.SIGTERM)
            exit_code = await service.process.wait()
    handled = sum(1 for line in service.lines if line.get("event") == "test.echo")
    assert tally.broken == []
    assert tally.dropped == 0, tally
    assert tally.answered == handled  # every request the app handled was answered
    assert tally.answered > WARM_UP
    assert tally.closing_answers >= 1  # the drain told kept-alive clients to go
    assert exit_code == 0


async def test_readiness_says_draining_while_the_listener_stays_open(tmp_path: Path) -> None:
    """`shutdown.readiness_delay_s`: after SIGTERM readiness answers 503 `draining` and new
    connections are still served (each answer saying `Connection: close`), websockets stay
    open, until the delay has passed; then the listener closes, the websocket gets 1001 and
    the process exits 0."""
    delay_s = 2.0
    env = base_env(tmp_path, {"LUMIKU_SHUTDOWN_READINESS_DELAY_S": str(delay_s)})
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            service = await start(nursery, env)
            port = port_of(await service.wait_for("service.ready"))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                token = (await register(client, "delay@example.com"))["token"]
                async with connect(f"ws://127.0.0.1:{port}/api/ws?token={token}") as ws:
                    assert json.loads(await ws.receive())["type"] == "ready"
                    ready = await client.get("/health/readiness")
                    signalled_at = time.monotonic()
                    service.signal(signal.SIGTERM)
                    await service.wait_for("service.draining")
                    draining = await client.get("/health/readiness")  # kept-alive connection
                    fresh = await client.get("/health/liveness")  # a new one: still listening
                    await ws.send('{"type":"ping"}')
                    pong = json.loads(await ws.receive())
                    answered_within_s = time.monotonic() - signalled_at
                    code = await expect_close(ws)
                    closed_after_s = time.monotonic() - signalled_at
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except ConnectionRefusedError:
                    break
                await trio.sleep(0.01)
            exit_code = await service.process.wait()
    assert answered_within_s < delay_s  # else this test proves nothing
    assert ready.status_code == 200
    assert "connection" not in ready.headers
    assert draining.status_code == 503
    assert draining.json()["status"] == "draining"
    assert draining.headers["connection"] == "close"
    assert fresh.status_code == 200
    assert fresh.headers["connection"] == "close"
    assert pong == {"type": "pong"}
    assert code == 1001
    assert closed_after_s >= delay_s  # the socket closed with the listener, not before
    assert exit_code == 0
