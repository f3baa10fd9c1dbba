"""The drain of the real process on SIGTERM: websockets closed with 1001 at once, every
request the server received answered, readiness `draining` while the listener stays open."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e.harness import register
from tests.e2e.process import base_env, start
from tests.e2e.test_process import port_of
from tests.e2e.wsclient import Closed, WsClient, connect

pytestmark = pytest.mark.slow


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
