"""Flags against a real Redis: an override whose announcement was lost still arrives by
the periodic re-read, and an announced change arrives without waiting for it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from lumiku.config import load_settings
from lumiku.flags import REDIS_KEY, Flags, FlagValue, serve_flags, set_override
from lumiku.redis import Client, open_redis


@contextlib.asynccontextmanager
async def watching(
    tmp_path: Path, redis_url: str, refresh_s: float
) -> AsyncIterator[tuple[Flags, Client]]:
    settings = load_settings(
        environ={"LUMIKU_REDIS_URL": redis_url, "LUMIKU_VAR_DIR": str(tmp_path)},
        default_path=str(tmp_path / "absent.toml"),
    )
    flags = Flags()
    async with open_redis(settings.redis) as redis, trio.open_nursery() as nursery:
        assert redis is not None
        await nursery.start(serve_flags, flags, redis, refresh_s)
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
