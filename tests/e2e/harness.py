"""Start the real service in-process (supervisor.run on port 0) and talk HTTP to it."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from quart import Blueprint

from lumiku import supervisor
from lumiku.apps.registry import Registry
from lumiku.config import Settings, load_settings
from lumiku.observability import logging as logs
from lumiku.shutdown import ShutdownState
from lumiku.testing import routes_for_tests


def make_settings(tmp_path: Path, env: Mapping[str, str] | None = None) -> Settings:
    """Settings from an explicit environment only: nothing from the host leaks in."""
    environ = {
        "LUMIKU_ENVIRONMENT": "test",
        "LUMIKU_VAR_DIR": str(tmp_path / "var"),
        "LUMIKU_HTTP_BIND": "127.0.0.1:0",
        "LUMIKU_SHUTDOWN_GRACE_S": "5",
        # Cheap argon2 for speed; the production parameters are tested in unit tests.
        "LUMIKU_AUTH_ARGON2_TIME_COST": "1",
        "LUMIKU_AUTH_ARGON2_MEMORY_KIB": "1024",
        "LUMIKU_AUTH_ARGON2_PARALLELISM": "1",
        **(env or {}),
    }
    return load_settings(environ=environ, default_path=str(tmp_path / "absent.toml"))


@attrs.define
class Service:
    base_url: str
    client: httpx.AsyncClient
    state: ShutdownState
    log: io.StringIO
    settings: Settings

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/api/ws"

    async def authed_ws_url(self, email: str = "ws-user@example.com") -> str:
        """A websocket URL carrying the token of a newly registered user."""
        body = await register(self.client, email)
        return f"{self.ws_url}?token={body['token']}"

    def log_text(self) -> str:
        return self.log.getvalue()

    def log_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines()]

    async def wait_for_log(self, **match: Any) -> dict[str, Any]:
        """The first log line whose fields include `match` (lines such as the access line are
        written just after the response is sent, so they may trail it)."""
        with trio.fail_after(5):
            while True:
                for line in self.log_lines():
                    if all(line.get(k) == v for k, v in match.items()):
                        return line
                await trio.sleep(0.01)


STRONG_PASSWORD = "Tr0ub4dor&3-horse"


async def register(
    client: httpx.AsyncClient, email: str, password: str = STRONG_PASSWORD
) -> dict[str, Any]:
    """Register through the API; the response body (user, token, balance)."""
    response = await client.post("/api/auth/register", json={"email": email, "password": password})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def running_service(
    settings: Settings,
    blueprints: Iterable[Blueprint] | None = None,
    apps: Registry | None = None,
) -> AsyncIterator[Service]:
    """The real service with the test routes, its log captured; stopped gracefully on exit."""
    log = io.StringIO()
    logs.configure("info", "json", settings.secret_values(), stream=log)
    state = ShutdownState()
    routes = list(blueprints) if blueprints is not None else [routes_for_tests()]
    async with trio.open_nursery() as nursery:
        apps = apps if apps is not None else Registry()  # no apps unless the test brings them
        run = partial(supervisor.run, settings, blueprints=routes, state=state, apps=apps)
        addresses = await nursery.start(run)
        async with httpx.AsyncClient(base_url=addresses[0], timeout=10) as client:
            yield Service(addresses[0], client, state, log, settings)
        state.request("test finished")


async def read_sse_frames(
    client: httpx.AsyncClient,
    url: str,
    headers: Mapping[str, str],
    *,
    timeout_s: float | None = None,
    on_frame: Callable[[dict[str, Any]], None] = lambda frame: None,
) -> list[dict[str, Any]]:
    """The frames (`id`, `event`, `data` decoded) of one SSE stream, read until the server
    ends it; `on_frame` sees each as it arrives."""
    frames: list[dict[str, Any]] = []
    timeout = httpx.USE_CLIENT_DEFAULT if timeout_s is None else timeout_s
    async with client.stream("GET", url, headers=dict(headers), timeout=timeout) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        async for line in response.aiter_lines():
            if line == "":
                if current:
                    frames.append(current)
                    on_frame(current)
                current = {}
            elif line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
    return frames
