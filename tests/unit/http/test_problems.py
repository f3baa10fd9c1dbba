"""Dependency outages reaching a route become 503 problems; other errors stay 500."""

from __future__ import annotations

import trio
from quart_trio import QuartTrio

from lumiku.errors import RedisUnavailable, Unavailable
from lumiku.http.problems import register_error_handlers


async def _raise_both(first: BaseException, second: BaseException) -> None:
    async def fail(error: BaseException) -> None:
        raise error

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fail, first)
        nursery.start_soon(fail, second)


def make_app() -> QuartTrio:
    app = QuartTrio(__name__)
    register_error_handlers(app)

    @app.get("/database")
    async def database() -> str:
        raise Unavailable("PostgreSQL: no answer within 8 s")

    @app.get("/redis")
    async def redis() -> str:
        raise RedisUnavailable("redis: no answer within 1 s")

    @app.get("/group")
    async def group() -> str:
        await _raise_both(Unavailable("PostgreSQL: closed"), Unavailable("PostgreSQL: closed"))
        return "unreachable"

    @app.get("/bug")
    async def bug() -> str:
        raise RuntimeError("our bug")

    return app


async def test_database_unavailable_is_503_with_retry_after_and_no_internals() -> None:
    response = await make_app().test_client().get("/database")
    assert response.status_code == 503
    assert response.content_type == "application/problem+json"
    assert "Retry-After" in response.headers
    body = await response.get_json()
    assert body["code"] == "DATABASE_UNAVAILABLE"
    assert "PostgreSQL" not in str(body)


async def test_redis_unavailable_is_503_service_unavailable() -> None:
    response = await make_app().test_client().get("/redis")
    assert response.status_code == 503
    assert (await response.get_json())["code"] == "SERVICE_UNAVAILABLE"
    assert "Retry-After" in response.headers


async def test_a_group_of_outages_is_an_outage() -> None:
    response = await make_app().test_client().get("/group")
    assert response.status_code == 503
    assert (await response.get_json())["code"] == "DATABASE_UNAVAILABLE"


async def test_our_bugs_stay_500() -> None:
    response = await make_app().test_client().get("/bug")
    assert response.status_code == 500
    assert (await response.get_json())["code"] == "INTERNAL"
