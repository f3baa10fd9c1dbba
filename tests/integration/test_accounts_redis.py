"""Login protections shared across instances through Redis (PostgreSQL + Redis)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from lumiku.testing import TcpProxy
from tests.e2e.harness import STRONG_PASSWORD, Service, make_settings, register, running_service

WRONG = "Wrong-passw0rd!"


@contextlib.asynccontextmanager
async def two_instances(
    tmp_path: Path, postgres_url: str, redis_url: str, **env: str
) -> AsyncIterator[tuple[Service, Service]]:
    settings = {"LUMIKU_DATABASE_URL": postgres_url, "LUMIKU_REDIS_URL": redis_url, **env}
    async with (
        running_service(make_settings(tmp_path / "a", settings)) as a,
        running_service(make_settings(tmp_path / "b", settings)) as b,
    ):
        yield a, b


async def test_lockout_holds_on_a_second_instance(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    limits = {"LUMIKU_RATELIMIT_LOGIN": "1000/15m"}
    with trio.fail_after(60):
        async with two_instances(tmp_path, postgres_url, redis_url, **limits) as (a, b):
            await register(a.client, "shared@example.com")
            for _ in range(5):
                failed = await a.client.post(
                    "/api/auth/login", json={"email": "shared@example.com", "password": WRONG}
                )
                assert failed.status_code == 401
            locked = await b.client.post(
                "/api/auth/login", json={"email": "shared@example.com", "password": STRONG_PASSWORD}
            )
    assert locked.status_code == 429
    assert locked.json()["code"] == "ACCOUNT_LOCKED"
    assert 0 < int(locked.headers["retry-after"]) <= 900


async def test_login_rate_limit_is_shared_and_sixth_is_429(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    with trio.fail_after(60):
        async with two_instances(tmp_path, postgres_url, redis_url) as (a, b):
            remaining = []
            for i in range(5):
                client = (a if i % 2 == 0 else b).client
                response = await client.post(
                    "/api/auth/login", json={"email": f"u{i}@example.com", "password": WRONG}
                )
                assert response.status_code == 401
                assert response.headers["ratelimit-limit"] == "5"
                remaining.append(int(response.headers["ratelimit-remaining"]))
            sixth = await b.client.post(
                "/api/auth/login", json={"email": "u6@example.com", "password": WRONG}
            )
    assert remaining == [4, 3, 2, 1, 0]
    assert sixth.status_code == 429
    assert sixth.json()["code"] == "RATE_LIMITED"
    assert 0 < int(sixth.headers["retry-after"]) <= 900
    assert sixth.headers["ratelimit-remaining"] == "0"
    assert int(sixth.headers["ratelimit-reset"]) <= 900


async def test_login_fails_closed_and_liveness_open_when_redis_is_down(
    tmp_path: Path, postgres_url: str, redis_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, url = redis_proxy
    env = {"LUMIKU_DATABASE_URL": postgres_url, "LUMIKU_REDIS_URL": url}
    with trio.fail_after(60):
        async with running_service(make_settings(tmp_path, env)) as service:
            await register(service.client, "outage@example.com")
            proxy.take_down()
            login = await service.client.post(
                "/api/auth/login", json={"email": "outage@example.com", "password": STRONG_PASSWORD}
            )
            liveness = await service.client.get("/health/liveness")
            proxy.bring_up()
            with trio.fail_after(5):
                while True:
                    again = await service.client.post(
                        "/api/auth/login",
                        json={"email": "outage@example.com", "password": STRONG_PASSWORD},
                    )
                    if again.status_code != 503:
                        break
                    await trio.sleep(0.05)
    assert login.status_code == 503
    assert login.json()["code"] == "RATE_LIMITER_UNAVAILABLE"
    assert "retry-after" in login.headers
    assert liveness.status_code == 200
    assert again.status_code == 200
