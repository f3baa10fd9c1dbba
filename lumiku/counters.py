"""Fixed-window counters: the store behind the rate limiter and the login lockout.

A window starts at a key's first hit and lasts `window_s`; every hit inside it increments
one counter, and the next hit after it starts a new window at 1. `MemoryCounters` serves
one process (the embedded default); `RedisCounters` is shared by every instance using the
same Redis (SPEC §15) and raises `RedisUnavailable` when Redis fails, which callers turn
into fail-open or fail-closed decisions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol

import attrs
import trio

from lumiku import redis

if TYPE_CHECKING:
    from lumiku.redis import Client

REDIS_PREFIX: Final = "lumiku:rl:"
SWEEP_EVERY: Final = 1024


@attrs.frozen
class Window:
    """A counter's current window: hits so far and seconds until it ends."""

    count: int
    reset_s: float


EMPTY: Final = Window(0, 0.0)


class Counters(Protocol):
    async def hit(self, key: str, window_s: int) -> Window:
        """Atomically count one hit in `key`'s current window (starting one if none)."""

    async def peek(self, key: str) -> Window:
        """`key`'s current window without counting; count 0 and reset 0 when none."""

    async def clear(self, key: str) -> None:
        """Forget `key`'s window."""


class MemoryCounters:
    """Counters in a dict, on trio's clock (so tests can use `autojump_clock`).

    Expired windows are swept every `sweep_every` hits, so memory holds at most the live
    windows plus `sweep_every` dead ones.
    """

    def __init__(self, sweep_every: int = SWEEP_EVERY) -> None:
        self._windows: dict[str, tuple[int, float]] = {}  # key → (count, expires_at)
        self._sweep_every = sweep_every
        self._hits_since_sweep = 0

    def __len__(self) -> int:
        """How many windows are held, expired ones not yet swept included."""
        return len(self._windows)

    async def hit(self, key: str, window_s: int) -> Window:
        now = trio.current_time()
        self._hits_since_sweep += 1
        if self._hits_since_sweep >= self._sweep_every:
            self._sweep(now)
        count, expires_at = self._windows.get(key, (0, now))
        if expires_at <= now:
            count, expires_at = 0, now + window_s
        count += 1
        self._windows[key] = (count, expires_at)
        return Window(count, expires_at - now)

    async def peek(self, key: str) -> Window:
        now = trio.current_time()
        count, expires_at = self._windows.get(key, (0, now))
        if expires_at <= now:
            return EMPTY
        return Window(count, expires_at - now)

    async def clear(self, key: str) -> None:
        self._windows.pop(key, None)

    def _sweep(self, now: float) -> None:
        self._hits_since_sweep = 0
        self._windows = {k: v for k, v in self._windows.items() if v[1] > now}


class RedisCounters:
    """Counters in Redis under `lumiku:rl:`, one round trip per call.

    Every call raises `RedisUnavailable` when Redis fails or takes longer than
    `timeout_s` (`redis.command_timeout_s`): an unreachable Redis must not hold a request
    for long, and a fail-closed rule must refuse rather than wait (`redis.bounded`).
    """

    def __init__(self, client: Client, timeout_s: float = redis.COUNTER_TIMEOUT_S) -> None:
        self._client = client
        self._timeout_s = timeout_s

    async def hit(self, key: str, window_s: int) -> Window:
        count, ttl_ms = await redis.fixed_window_hit(
            self._client, REDIS_PREFIX + key, window_s * 1000, self._timeout_s
        )
        return Window(count, ttl_ms / 1000)

    async def peek(self, key: str) -> Window:
        count, ttl_ms = await redis.counter_peek(self._client, REDIS_PREFIX + key, self._timeout_s)
        return Window(count, ttl_ms / 1000) if count else EMPTY

    async def clear(self, key: str) -> None:
        await redis.counter_clear(self._client, REDIS_PREFIX + key, self._timeout_s)


def make_counters(client: Client | None, timeout_s: float = redis.COUNTER_TIMEOUT_S) -> Counters:
    """`RedisCounters` (each call bounded by `timeout_s`) when Redis is configured, else
    `MemoryCounters`."""
    return MemoryCounters() if client is None else RedisCounters(client, timeout_s)
