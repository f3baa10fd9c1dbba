"""Flags against a real Redis: an override whose announcement was lost still arrives by
the periodic re-read, an announced change arrives without waiting for it, and a Redis
outage keeps the last values and ends nothing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import trio

from lumiku.config import RedisSettings, load_settings
from lumiku.flags import REDIS_KEY, Flags, FlagValue, serve_flags, set_override
from lumiku.redis import Client, open_redis
from lumiku.retrying import TaskTroubles
from lumiku.testing import TcpProxy


@contextlib.asynccontextmanager
async def watching(
    tmp_path: Path, redis_url: str, refresh_s: float, troubles: TaskTroubles | None = None
) -> AsyncIterator[tuple[Flags, Client]]:
    settings = load_settings(
        environ={"LUMIKU_REDIS_URL": redis_url, "LUMIKU_VAR_DIR": str(tmp_path)},
        default_path=str(tmp_path / "absent.toml"),
    )
    flags = Flags()
    async with open_redis(settings.redis) as redis, trio.open_nursery() as nursery:
        assert redis is not None
        await nursery.start(partial(serve_flags, troubles=troubles), flags, redis, refresh_s)
        yield flags, redis
        nursery.cancel_scope.cancel()


async def until(condition: object) -> None:
    while not condition():  # type: ignore[operator]
        await trio.sleep(0.02)


async def test_a_lost_announcement_is_caught_up_by_the_re_read(
    tmp_path: Path, redis_url: str
) -> None:
    with trio.fail_after(20):
        async with watching(tmp_path, redis_url, refresh_s=0.5) as (flags, redis):
            await redis.hset(REDIS_KEY, {"quiet": "40"})  # behind everyone's back: no message
            with trio.fail_after(2):
                await until(lambda: "quiet" in flags.overrides)
            assert flags.value("quiet") == (FlagValue(40), "redis")


async def test_an_announced_change_does_not_wait_for_the_re_read(
    tmp_path: Path, redis_url: str
) -> None:
    with trio.fail_after(20):
        async with watching(tmp_path, redis_url, refresh_s=60) as (flags, redis):
            await set_override(redis, "loud", FlagValue(0, off=True))
            with trio.fail_after(2):
                await until(lambda: "loud" in flags.overrides)
            await set_override(redis, "loud", None)
            with trio.fail_after(2):
                await until(lambda: "loud" not in flags.overrides)


async def test_a_redis_outage_keeps_the_last_values_and_the_task_comes_back(
    tmp_path: Path, redis_url: str, redis_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, proxied = redis_proxy
    troubles = TaskTroubles()
    with trio.fail_after(30):
        async with (
            open_redis(RedisSettings(url=redis_url)) as direct,
            watching(tmp_path, proxied, refresh_s=0.2, troubles=troubles) as (flags, _redis),
        ):
            assert direct is not None
            await set_override(direct, "kept", FlagValue(30))
            await until(lambda: "kept" in flags.overrides)

            proxy.take_down()
            await until(lambda: {"flags.refresh", "flags.subscription"} <= set(troubles.failing))
            await direct.hset(REDIS_KEY, {"later": "10"})  # while this instance cannot see
            assert flags.value("kept") == (FlagValue(30), "redis")  # the last values hold

            proxy.bring_up()
            await until(lambda: "later" in flags.overrides)
            await until(lambda: not troubles.failing)  # subscribed and reading again
            await set_override(direct, "announced", FlagValue(0, off=True))
            with trio.fail_after(2):  # changes arrive again
                await until(lambda: "announced" in flags.overrides)
