"""Readiness against real PostgreSQL and Redis, and Redis going away and coming back."""

from __future__ import annotations

from pathlib import Path

import httpx
import trio

from lumiku.testing import TcpProxy
from tests.e2e.harness import Service, make_settings, running_service


async def wait_for_status(service: Service, status: int, within_s: float) -> httpx.Response:
    """Poll readiness until it answers `status`; fail after `within_s`."""
    with trio.fail_after(within_s):
        while True:
            response = await service.client.get("/health/readiness")
            if response.status_code == status:
                return response
            await trio.sleep(0.05)


async def test_readiness_follows_redis_on_postgres(
    tmp_path: Path, postgres_url: str, redis_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, redis_url = redis_proxy
    env = {"LUMIKU_DATABASE_URL": postgres_url, "LUMIKU_REDIS_URL": redis_url}
    with trio.fail_after(60):
        async with running_service(make_settings(tmp_path, env)) as service:
            ready = await service.client.get("/health/readiness")
            assert ready.status_code == 200
            checks = ready.json()["checks"]
            assert set(checks) == {"database", "redis"}
            for name in ("database", "redis"):
                assert checks[name]["status"] == "ok"
                assert checks[name]["latency_ms"] >= 0

            proxy.take_down()
            down = await wait_for_status(service, 503, within_s=2)
            body = down.json()
            assert body["status"] == "not_ready"
            assert body["checks"]["redis"]["status"] == "error"
            assert body["checks"]["database"]["status"] == "ok"
            assert str(proxy.port) not in down.text  # no connection details leak

            proxy.bring_up()
            back = await wait_for_status(service, 200, within_s=3)
            assert back.json()["checks"]["redis"]["status"] == "ok"

            detailed = (await service.client.get("/health/detailed")).json()
            assert detailed["status"] == "healthy"
            assert detailed["checks"]["database"]["backend"] == "postgres"
            assert detailed["checks"]["database"]["schema_current"] is True


async def test_detailed_is_degraded_while_redis_is_down(
    tmp_path: Path, redis_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, redis_url = redis_proxy
    with trio.fail_after(30):
        async with running_service(
            make_settings(tmp_path, {"LUMIKU_REDIS_URL": redis_url})
        ) as service:
            proxy.take_down()
            response = await service.client.get("/health/detailed")
            assert response.status_code == 200
            body = response.json()
            assert body["status"] == "degraded"
            assert body["checks"]["redis"]["status"] == "error"
