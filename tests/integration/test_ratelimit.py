"""The rate limiter against real Redis and real HTTP servers, Redis outage included."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from quart import Blueprint
from quart_trio import QuartTrio

from lumiku.config import RedisSettings, Settings
from lumiku.counters import REDIS_PREFIX, RedisCounters, Window
from lumiku.errors import RedisUnavailable
from lumiku.http.middleware import EdgeMiddleware
from lumiku.http.problems import register_error_handlers
from lumiku.http.ratelimit import LIMITER_KEY, RateLimiter, rate_limited
from lumiku.http.server import serve_http
from lumiku.redis import Client, bounded, open_redis, open_subscription, ping
from lumiku.shutdown import ShutdownState
from lumiku.testing import TcpProxy
from tests.e2e.harness import make_settings


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Client]:
    async with open_redis(RedisSettings(url=redis_url)) as client:
        assert client is not None
        yield client


def build_app(settings: Settings, redis: Client) -> EdgeMiddleware:
    """A minimal app: the error mapping, a Redis-backed limiter and two limited routes."""
    app = QuartTrio("ratelimit-test")
    register_error_handlers(app)
    app.extensions[LIMITER_KEY] = RateLimiter(settings.ratelimit, RedisCounters(redis))
    routes = Blueprint("limited", __name__, url_prefix="/api/_rl")

    @routes.post("/login")
    @rate_limited("login")
    async def login() -> dict[str, str]:
        return {"route": "login"}

    @routes.get("/health")
    @rate_limited("health")
    async def health() -> dict[str, str]:
        return {"route": "health"}

    app.register_blueprint(routes)
    return EdgeMiddleware(app, settings)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app on a port of its own with its own Redis client; drained on exit."""
    state = ShutdownState()
    async with open_redis(settings.redis) as redis, trio.open_nursery() as nursery:
        assert redis is not None
        serve = partial(serve_http, build_app(settings, redis), settings.http, ["127.0.0.1:0"])
        addresses = await nursery.start(serve, state, 1.0)
        async with httpx.AsyncClient(base_url=addresses[0], timeout=10) as client:
            yield client
        state.request("test finished")


def limits(response: httpx.Response) -> tuple[str | None, ...]:
    return tuple(
        response.headers.get(f"RateLimit-{name}") for name in ("Limit", "Remaining", "Reset")
    )


async def test_the_sixth_login_in_the_window_is_429(tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(tmp_path, {"LUMIKU_REDIS_URL": redis_url})
    with trio.fail_after(20):
        async with serving(settings) as client:
            answers = [await client.post("/api/_rl/login") for _ in range(6)]
    assert [r.status_code for r in answers] == [200] * 5 + [429]
    assert [limits(r)[:2] for r in answers[:5]] == [("5", str(n)) for n in (4, 3, 2, 1, 0)]
    assert all(895 <= int(limits(r)[2] or 0) <= 900 for r in answers)
    rejected = answers[5]
    assert rejected.headers["content-type"] == "application/problem+json"
    assert rejected.json()["code"] == "RATE_LIMITED"
    assert limits(rejected)[:2] == ("5", "0")
    assert rejected.headers["Retry-After"] == limits(rejected)[2]


async def test_two_instances_share_the_count_through_redis(tmp_path: Path, redis_url: str) -> None:
    settings = make_settings(tmp_path, {"LUMIKU_REDIS_URL": redis_url})
    with trio.fail_after(20):
        async with serving(settings) as a, serving(settings) as b:
            assert a.base_url != b.base_url
            on_a = [await a.post("/api/_rl/login") for _ in range(3)]
            on_b = [await b.post("/api/_rl/login") for _ in range(3)]
            after = await a.post("/api/_rl/login")
    assert [r.status_code for r in on_a + on_b] == [200] * 5 + [429]
    assert [limits(r)[1] for r in on_a + on_b[:2]] == ["4", "3", "2", "1", "0"]
    assert after.status_code == 429


async def test_redis_outage_fails_login_closed_and_health_open(
    tmp_path: Path, redis_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, redis_url = redis_proxy
    settings = make_settings(tmp_path, {"LUMIKU_REDIS_URL": redis_url})
    with trio.fail_after(30):
        async with serving(settings) as client:
            assert (await client.post("/api/_rl/login")).status_code == 200

            proxy.take_down()
            closed = await client.post("/api/_rl/login")
            assert closed.status_code == 503
            assert closed.json()["code"] == "RATE_LIMITER_UNAVAILABLE"
            assert int(closed.headers["Retry-After"]) > 0
            assert limits(closed) == (None, None, None)
            opened = await client.get("/api/_rl/health")
            assert opened.status_code == 200
            assert opened.json() == {"route": "health"}
            assert limits(opened) == (None, None, None)  # nothing was counted

            proxy.bring_up()
            while "RateLimit-Limit" not in (await client.get("/api/_rl/health")).headers:
                await trio.sleep(0.05)
            back = await client.post("/api/_rl/login")
            assert back.status_code == 200
            assert limits(back)[:2] == ("5", "3")  # the count from before the outage holds


async def test_one_round_trip_per_hit_and_the_ttl_is_set_once(redis: Client) -> None:
    counters = RedisCounters(redis)
    await counters.hit("warm-up", 60)  # the first call may SCRIPT LOAD
    before = await command_calls(redis)
    windows = [await counters.hit("login:ip:1.2.3.4", 60) for _ in range(3)]
    after = await command_calls(redis)
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    assert [w.count for w in windows] == [1, 2, 3]
    assert all(59 < w.reset_s <= 60 for w in windows)
    assert delta["evalsha"] == 3  # one command per hit from the client
    assert delta["incr"] == 3  # run inside the script
    assert delta["pexpire"] == 1  # the first hit only
    assert delta.get("eval", 0) == delta.get("script|load", 0) == 0
    assert await redis.exists([f"{REDIS_PREFIX}login:ip:1.2.3.4"]) == 1


async def command_calls(redis: Client) -> dict[str, int]:
    """Calls per command since the server started (INFO commandstats)."""
    stats: dict[str, Any] = dict(await redis.info("commandstats"))
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name.startswith("cmdstat_")
    }


async def test_peek_and_clear_on_redis(redis: Client) -> None:
    counters = RedisCounters(redis)
    assert await counters.peek("k") == Window(0, 0.0)
    await counters.hit("k", 30)
    await counters.hit("k", 30)
    peeked = await counters.peek("k")
    assert peeked.count == 2
    assert 29 < peeked.reset_s <= 30
    assert (await counters.peek("k")).count == 2  # peeking does not count
    await counters.clear("k")
    assert await counters.peek("k") == Window(0, 0.0)
    assert (await counters.hit("k", 30)).count == 1


async def test_a_counter_without_ttl_gets_one_back(redis: Client) -> None:
    counters = RedisCounters(redis)
    await counters.hit("k", 30)
    await redis.persist(f"{REDIS_PREFIX}k")
    window = await counters.hit("k", 30)
    assert window.count == 2
    assert 29 < window.reset_s <= 30
    assert 0 < await redis.pttl(f"{REDIS_PREFIX}k") <= 30_000


async def test_unreachable_redis_raises_redis_unavailable(
    redis_proxy: tuple[TcpProxy, str],
) -> None:
    proxy, redis_url = redis_proxy
    async with open_redis(RedisSettings(url=redis_url)) as redis:
        assert redis is not None
        counters = RedisCounters(redis)
        assert (await counters.hit("k", 30)).count == 1
        proxy.take_down()
        with trio.fail_after(5):
            with pytest.raises(RedisUnavailable):
                await counters.hit("k", 30)
            with pytest.raises(RedisUnavailable):
                await counters.peek("k")
            with pytest.raises(RedisUnavailable):
                await counters.clear("k")


async def test_a_redis_that_never_answers_times_out_as_unavailable() -> None:
    async def black_hole(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, black_hole, 0, host="127.0.0.1"))
        port = listener.socket.getsockname()[1]
        async with open_redis(RedisSettings(url=f"redis://127.0.0.1:{port}/0")) as redis:
            assert redis is not None
            started = trio.current_time()
            with pytest.raises(RedisUnavailable):
                await RedisCounters(redis, timeout_s=0.3).hit("k", 30)
            assert trio.current_time() - started < 2
        nursery.cancel_scope.cancel()


async def test_silent_redis_fails_login_closed_within_the_limiter_timeout(
    tmp_path: Path, redis_proxy: tuple[TcpProxy, str]
) -> None:
    """Redis dropped (silence, not a reset): every login, sequential or concurrent, answers
    503 RATE_LIMITER_UNAVAILABLE within the limiter's timeout; none is let through, not
    even one whose call was pending when the drop began. Counted again after the restore."""
    proxy, redis_url = redis_proxy
    settings = make_settings(
        tmp_path, {"LUMIKU_REDIS_URL": redis_url, "LUMIKU_REDIS_COMMAND_TIMEOUT_S": "0.5"}
    )
    with trio.fail_after(30):
        async with serving(settings) as client:
            assert (await client.post("/api/_rl/login")).status_code == 200
            proxy.drop()
            answers: list[httpx.Response] = []

            async def login() -> None:
                with trio.fail_after(0.5 + 2):  # the limiter's timeout, and slack
                    answers.append(await client.post("/api/_rl/login"))

            async with trio.open_nursery() as nursery:
                for _ in range(8):
                    nursery.start_soon(login)
            await login()
            assert [r.status_code for r in answers] == [503] * 9
            assert {r.json()["code"] for r in answers} == {"RATE_LIMITER_UNAVAILABLE"}
            opened = await client.get("/api/_rl/health")  # a fail-open rule
            assert opened.status_code == 200

            proxy.bring_up()
            while "RateLimit-Limit" not in (await client.get("/api/_rl/health")).headers:
                await trio.sleep(0.05)
            # Counted again. Hits sent into the silent connection before the first timeout
            # reach Redis when the path heals (as retransmitted data does after a
            # partition), so this window may already be full: a 429, never a 503.
            back = await client.post("/api/_rl/login")
            assert back.status_code in (200, 429)
            assert limits(back)[0] == "5"


async def test_subscribing_through_a_silent_network_is_bounded(
    redis_proxy: tuple[TcpProxy, str],
) -> None:
    proxy, redis_url = redis_proxy
    async with open_redis(RedisSettings(url=redis_url)) as redis:
        assert redis is not None
        async with open_subscription(redis, "lumiku:test:bounded") as subscription:
            assert subscription is not None  # subscribed while the path is open
        proxy.drop()
        with trio.fail_after(0.5 + 2), pytest.raises(RedisUnavailable, match="subscription"):
            async with open_subscription(redis, "lumiku:test:bounded", timeout_s=0.5):
                pytest.fail("subscribed through a silent network")
        proxy.bring_up()
        with trio.fail_after(10):
            async with open_subscription(redis, "lumiku:test:bounded"):
                pass


BUSY_300_MS = """
local start = redis.call('TIME')
repeat
  local now = redis.call('TIME')
until (now[1] - start[1]) * 1000000 + (now[2] - start[2]) > 300000
return 1
"""


async def test_a_call_left_unanswered_discards_its_connection_not_the_subscriptions(
    redis: Client,
) -> None:
    """A command that does not answer in time (a script busy for 300 ms) gets its
    connection discarded, so the next call connects afresh; a subscription of the same
    client keeps receiving."""
    async with open_subscription(redis, "lumiku:test:spared") as subscription:
        with (
            trio.fail_after(5),
            pytest.raises(RedisUnavailable, match="no answer"),
            bounded(redis, 0.1),
        ):
            await redis.eval(BUSY_300_MS, keys=[], args=[])
        with trio.fail_after(5):
            await ping(redis, 1.0)
            await redis.publish("lumiku:test:spared", "still here")
            assert await subscription.receive() == b"still here"
