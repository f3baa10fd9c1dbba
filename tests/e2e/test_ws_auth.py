"""`/api/ws` authentication: header, ?token=, or a first auth message within 10 s; else 4401."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.e2e.harness import Service, make_settings, register, running_service
from tests.e2e.wsclient import Closed, connect


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    with trio.fail_after(60):
        async with running_service(make_settings(tmp_path)) as svc:
            yield svc


async def expect_ready(ws: object, user_id: str) -> None:
    import json

    from tests.e2e.wsclient import WsClient

    assert isinstance(ws, WsClient)
    assert json.loads(await ws.receive()) == {"type": "ready", "user_id": user_id}
    await ws.send('{"type":"ping"}')
    assert json.loads(await ws.receive()) == {"type": "pong"}


async def test_header_authentication(service: Service) -> None:
    body = await register(service.client, "h@example.com")
    headers = [(b"authorization", f"Bearer {body['token']}".encode())]
    async with connect(service.ws_url, headers) as ws:
        await expect_ready(ws, body["user"]["id"])


async def test_query_token_authentication(service: Service) -> None:
    body = await register(service.client, "q@example.com")
    async with connect(f"{service.ws_url}?token={body['token']}") as ws:
        await expect_ready(ws, body["user"]["id"])


async def test_first_message_authentication(service: Service) -> None:
    body = await register(service.client, "m@example.com")
    async with connect(service.ws_url) as ws:
        await ws.send(f'{{"type":"auth","token":"{body["token"]}"}}')
        await expect_ready(ws, body["user"]["id"])


@pytest.mark.parametrize("first", ['{"type":"auth","token":"forged.token.x"}', '{"type":"ping"}'])
async def test_bad_first_message_is_closed_4401(service: Service, first: str) -> None:
    async with connect(service.ws_url) as ws:
        await ws.send(first)
        with pytest.raises(Closed) as closed:
            await ws.receive()
        assert closed.value.code == 4401


async def test_invalid_query_token_is_closed_4401(service: Service) -> None:
    async with connect(f"{service.ws_url}?token=garbage") as ws:
        with pytest.raises(Closed) as closed:
            await ws.receive()
        assert closed.value.code == 4401


async def test_silence_is_closed_4401_after_10_s(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with running_service(make_settings(tmp_path)) as svc, connect(svc.ws_url) as ws:
        opened = trio.current_time()
        with pytest.raises(Closed) as closed:
            await ws.receive()
        waited = trio.current_time() - opened
    assert closed.value.code == 4401
    assert 10 <= waited < 11
