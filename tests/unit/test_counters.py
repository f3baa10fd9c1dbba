"""MemoryCounters: fixed windows on trio's clock (autojump: no real sleeping)."""

from __future__ import annotations

import trio
import trio.testing

from lumiku.counters import MemoryCounters, Window, make_counters


async def test_hits_count_up_within_one_window(autojump_clock: trio.testing.MockClock) -> None:
    counters = MemoryCounters()
    assert await counters.hit("k", 60) == Window(1, 60.0)
    await trio.sleep(10)
    assert await counters.hit("k", 60) == Window(2, 50.0)
    assert await counters.hit("k", 60) == Window(3, 50.0)


async def test_the_window_starts_at_the_first_hit_and_resets_after_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    counters = MemoryCounters()
    await counters.hit("k", 60)
    await trio.sleep(59.5)
    assert (await counters.hit("k", 60)).count == 2
    await trio.sleep(0.5)  # exactly at the end: a new window
    assert await counters.hit("k", 60) == Window(1, 60.0)


async def test_keys_count_separately(autojump_clock: trio.testing.MockClock) -> None:
    counters = MemoryCounters()
    await counters.hit("a", 60)
    await counters.hit("a", 60)
    assert (await counters.hit("b", 60)).count == 1


async def test_peek_does_not_count_and_is_empty_when_absent_or_expired(
    autojump_clock: trio.testing.MockClock,
) -> None:
    counters = MemoryCounters()
    assert await counters.peek("k") == Window(0, 0.0)
    await counters.hit("k", 30)
    await trio.sleep(5)
    assert await counters.peek("k") == Window(1, 25.0)
    assert await counters.peek("k") == Window(1, 25.0)
    await trio.sleep(25)
    assert await counters.peek("k") == Window(0, 0.0)


async def test_clear_forgets_the_window(autojump_clock: trio.testing.MockClock) -> None:
    counters = MemoryCounters()
    for _ in range(3):
        await counters.hit("k", 60)
    await counters.clear("k")
    await counters.clear("absent")
    assert await counters.peek("k") == Window(0, 0.0)
    assert (await counters.hit("k", 60)).count == 1


async def test_expired_windows_are_swept(autojump_clock: trio.testing.MockClock) -> None:
    counters = MemoryCounters(sweep_every=10)
    for i in range(9):
        await counters.hit(f"old-{i}", 1)
    assert len(counters) == 9
    await trio.sleep(2)
    await counters.hit("live", 60)  # the 10th hit sweeps the 9 expired windows
    assert len(counters) == 1
    assert (await counters.peek("live")).count == 1


async def test_memory_stays_bounded_under_many_distinct_keys(
    autojump_clock: trio.testing.MockClock,
) -> None:
    counters = MemoryCounters(sweep_every=100)
    for i in range(10_000):
        await counters.hit(f"ip-{i}", 1)
        await trio.sleep(0.1)  # ~10 windows live at any moment
        assert len(counters) <= 100 + 10


async def test_live_windows_survive_a_sweep(autojump_clock: trio.testing.MockClock) -> None:
    counters = MemoryCounters(sweep_every=3)
    await counters.hit("live", 60)
    await counters.hit("live", 60)
    await counters.hit("other", 60)  # sweep
    assert (await counters.hit("live", 60)).count == 3


def test_make_counters_without_redis_is_in_memory() -> None:
    assert isinstance(make_counters(None), MemoryCounters)
