"""Redis access: `open_redis` (the ONLY module importing coredis) and error mapping.

Other modules type their client as `lumiku.redis.Client` and wrap calls in
`map_redis_errors()`, so coredis exceptions never travel further than this module.
"""

from __future__ import annotations

import contextlib
import math
from typing import TYPE_CHECKING, Final, TypeAlias

import coredis
import coredis.exceptions
import trio
from coredis.commands import Script

from lumiku.config import RedisSettings, redact_url
from lumiku.errors import RedisUnavailable, unwrapping_sole_exception
from lumiku.observability.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

log = get_logger(__name__)

# The default bound on one call (the `redis.command_timeout_s` default).
COMMAND_TIMEOUT_S: Final = 1.0

Client: TypeAlias = "coredis.Redis[bytes]"


_FAILURES: Final = (coredis.exceptions.RedisError, OSError, trio.TooSlowError)


@contextlib.contextmanager
def map_redis_errors() -> Iterator[None]:
    """Translate coredis and socket failures into `RedisUnavailable`, also when coredis's
    own tasks (a pubsub's reader and keep-alive) raise several at once in an exception
    group; a group holding anything else passes through unchanged."""
    try:
        yield
    except _FAILURES as exc:
        raise RedisUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
    except BaseExceptionGroup as group:
        failures, rest = group.split(_FAILURES)
        if failures is None or rest is not None:
            raise
        first = failures.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise RedisUnavailable(f"redis: {type(first).__name__}: {first}") from group


@contextlib.contextmanager
def bounded(client: Client, timeout_s: float) -> Iterator[None]:
    """Run the calls in the block within `timeout_s`; translate failures (`map_redis_errors`).

    A call that gets no answer in time (our bound, or coredis's `stream_timeout`) may mean
    the path to Redis is silent: the pooled connections still waiting for an answer are
    then discarded, so later calls connect afresh instead of queueing behind the unanswered
    ones on a connection that may never answer again (coredis multiplexes commands on one
    connection and keeps a connection whose command was cancelled). Commands already sent
    may still run if the path heals.
    """
    try:
        with trio.fail_after(timeout_s):
            yield
    except (trio.TooSlowError, TimeoutError) as exc:
        _discard_unanswered_connections(client)
        raise RedisUnavailable(f"redis: no answer within {timeout_s:g} s") from exc
    except (coredis.exceptions.RedisError, OSError) as exc:
        raise RedisUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc


def _discard_unanswered_connections(client: Client) -> None:
    """Invalidate the pool's connections that wait for an answer; subscriptions that wait
    for nothing keep theirs. Without coredis's private set of connections (another coredis
    version), every connection goes."""
    pool = client.connection_pool
    online = getattr(pool, "_online_connections", None)
    if not isinstance(online, set):
        pool.disconnect()
        return
    for connection in list(online):
        if connection.statistics.requests_pending:
            connection.invalidate("no answer in time")


@contextlib.asynccontextmanager
async def open_redis(settings: RedisSettings) -> AsyncIterator[Client | None]:
    """Yield a connected-on-demand client, or None when no Redis is configured.

    Connections are made lazily and re-made after an outage, so a Redis that is down at
    start-up or later only degrades readiness. Connecting is bounded by
    `connect_timeout_s`, each reply by `command_timeout_s` (callers bound their calls too,
    see `bounded`). Closes the pool on exit.
    """
    if not settings.url:
        yield None
        return
    client: Client = coredis.Redis.from_url(
        settings.url,
        connect_timeout=settings.connect_timeout_s,
        stream_timeout=settings.command_timeout_s,
        verify_version=False,
    )
    log.info("redis.opened", url=redact_url(settings.url))
    with unwrapping_sole_exception():  # coredis's pool is a nursery
        async with client:
            yield client


async def ping(client: Client, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
    """PING once; raise `RedisUnavailable` when Redis does not answer within `timeout_s`."""
    with bounded(client, timeout_s):
        await client.ping()


# --- Fixed-window counters (lumiku.counters.RedisCounters) ------------------------------

COUNTER_TIMEOUT_S: Final = COMMAND_TIMEOUT_S

# INCR, PEXPIRE on the first hit only, PTTL: one round trip, atomic. A key found without a
# TTL (SET or PERSISTed by hand) gets one again, so a counter can never lock out forever.
_HIT: Final = Script[bytes](
    script="""
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""
)
_PEEK: Final = Script[bytes](
    script="""
local count = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  return {0, 0}
end
return {count, ttl}
""",
    readonly=True,
)


def _pair(reply: object) -> tuple[int, int]:
    if not (isinstance(reply, list | tuple) and len(reply) == 2):
        raise RedisUnavailable(f"redis: unexpected counter reply {reply!r}")
    count, ttl_ms = reply
    return int(count), int(ttl_ms)


async def fixed_window_hit(
    client: Client, key: str, window_ms: int, timeout_s: float = COUNTER_TIMEOUT_S
) -> tuple[int, int]:
    """Count one hit on `key`; return (count, ms until the window ends).

    The window starts at the first hit and lasts `window_ms`. One EVALSHA (plus a SCRIPT
    LOAD the first time a server sees the script). Raises `RedisUnavailable` when Redis
    fails or does not answer within `timeout_s`.
    """
    with bounded(client, timeout_s):
        return _pair(await _HIT(keys=[key], args=[window_ms], client=client))


async def counter_peek(
    client: Client, key: str, timeout_s: float = COUNTER_TIMEOUT_S
) -> tuple[int, int]:
    """(count, ms until the window ends) of `key` without counting; (0, 0) when absent."""
    with bounded(client, timeout_s):
        return _pair(await _PEEK(keys=[key], client=client))


async def counter_clear(client: Client, key: str, timeout_s: float = COUNTER_TIMEOUT_S) -> None:
    """Forget `key`'s counter (a successful login clears its failures)."""
    with bounded(client, timeout_s):
        await client.delete([key])


# --- Job events (lumiku.events.RedisBus) ------------------------------------------------

EVENTS_TIMEOUT_S: Final = COMMAND_TIMEOUT_S

# Append each event to its job's capped stream (entry id `<seq>-0`, so a replay is one
# XRANGE from `<after_seq + 1>-0`), refresh the stream's TTL, and PUBLISH it: one round
# trip for a whole batch, atomic. KEYS are the streams (one per event, repeats allowed);
# ARGV: max_len, ttl_s, channel, then (entry id, entry, message) per key. Every event is
# published. An entry id the stream already holds is not stored again (the first of a seq
# stays); one missing but below the stream's last entry (published while Redis was down,
# written after a later event got there) is merged in place: the stream is rebuilt in seq
# order, so a replay has no gap. The reply says, per event, whether it was stored (1) or
# was there already (0).
_PUBLISH_EVENTS: Final = Script[bytes](
    script="""
local function seq_of(id) return tonumber(string.match(id, '^(%d+)')) end
local stored = {}
local late = {}
for i, key in ipairs(KEYS) do
  local at = 3 + (i - 1) * 3
  local id = ARGV[at + 1]
  local added = redis.pcall('XADD', key, 'MAXLEN', '~', ARGV[1], id, 'e', ARGV[at + 2])
  redis.call('EXPIRE', key, ARGV[2])
  redis.call('PUBLISH', ARGV[3], ARGV[at + 3])
  stored[i] = 1
  if type(added) == 'table' and added.err then
    late[key] = late[key] or {}
    local found = redis.pcall('XRANGE', key, id, id)
    if late[key][id] or found.err or #found > 0 then
      stored[i] = 0  -- there already, or not a stream at all (never fail the batch)
    else
      late[key][id] = ARGV[at + 2]
    end
  end
end
for key, missing in pairs(late) do
  if next(missing) then
    local merged = {}
    for _, entry in ipairs(redis.call('XRANGE', key, '-', '+')) do
      merged[#merged + 1] = {seq_of(entry[1]), entry[1], entry[2][2]}
    end
    for id, value in pairs(missing) do
      merged[#merged + 1] = {seq_of(id), id, value}
    end
    table.sort(merged, function(a, b) return a[1] < b[1] end)
    redis.call('DEL', key)
    for _, entry in ipairs(merged) do
      redis.call('XADD', key, entry[2], 'e', entry[3])
    end
    redis.call('XTRIM', key, 'MAXLEN', ARGV[1])
    redis.call('EXPIRE', key, ARGV[2])
  end
end
return stored
"""
)


async def publish_events(
    client: Client,
    items: Sequence[tuple[str, int, str, str]],
    channel: str,
    *,
    max_len: int,
    ttl_s: int,
    timeout_s: float = EVENTS_TIMEOUT_S,
) -> list[bool]:
    """For each `(stream_key, seq, entry, message)`: store `entry` as `seq` in the stream
    and PUBLISH `message` on `channel`, in ONE round trip for all of them.

    Streams keep about `max_len` entries and live `ttl_s` after their last event. A `seq`
    below the stream's last entry and missing from it is merged in place. Answers, per
    item, whether it was stored (False: the stream held that `seq` already; still
    published). Raises `RedisUnavailable` when Redis fails or does not answer within
    `timeout_s`.
    """
    if not items:
        return []
    args: list[str | int] = [max_len, ttl_s, channel]
    for _key, seq, entry, message in items:
        if seq < 1:
            raise ValueError("stream entries start at seq 1")
        args += [f"{seq}-0", entry, message]
    with bounded(client, timeout_s):
        reply: object = await _PUBLISH_EVENTS(
            keys=[key for key, *_rest in items], args=args, client=client
        )
    if not isinstance(reply, list) or len(reply) != len(items):
        raise RedisUnavailable(f"redis: unexpected publish reply {reply!r}")
    return [int(flag) == 1 for flag in reply]


# `publish_events` for events whose publisher may have died before publishing them: each is
# appended and PUBLISHed only when its seq is above its stream's last entry (missing), so a
# restore never delivers an event twice. KEYS are the streams; ARGV: max_len, ttl_s,
# channel, then (entry id, entry, message) per key. Replies the (1-based) indexes of those
# that were missing.
_RESTORE_EVENTS: Final = Script[bytes](
    script="""
local restored = {}
for i, key in ipairs(KEYS) do
  local at = 3 + (i - 1) * 3
  local added = redis.pcall('XADD', key, 'MAXLEN', '~', ARGV[1], ARGV[at + 1], 'e', ARGV[at + 2])
  if not (type(added) == 'table' and added.err) then
    redis.call('EXPIRE', key, ARGV[2])
    redis.call('PUBLISH', ARGV[3], ARGV[at + 3])
    table.insert(restored, i)
  end
end
return restored
"""
)


async def restore_events(
    client: Client,
    items: Sequence[tuple[str, int, str, str]],
    channel: str,
    *,
    max_len: int,
    ttl_s: int,
    timeout_s: float = EVENTS_TIMEOUT_S,
) -> list[int]:
    """For each `(stream_key, seq, entry, message)`: store and PUBLISH it only when `seq` is
    above the stream's last entry. One round trip; returns the indexes of those stored."""
    if not items:
        return []
    args: list[str | int] = [max_len, ttl_s, channel]
    for _key, seq, entry, message in items:
        if seq < 1:
            raise ValueError("stream entries start at seq 1")
        args += [f"{seq}-0", entry, message]
    with bounded(client, timeout_s):
        reply: object = await _RESTORE_EVENTS(
            keys=[key for key, *_rest in items], args=args, client=client
        )
    if not isinstance(reply, list):
        return []
    return [int(index) - 1 for index in reply]


async def last_stream_seq(
    client: Client, stream_key: str, timeout_s: float = EVENTS_TIMEOUT_S
) -> int:
    """The seq of the last entry `publish_events` stored in `stream_key`, 0 when none."""
    with bounded(client, timeout_s):
        entries = await client.xrevrange(stream_key, "+", "-", count=1)
    if not entries:
        return 0
    identifier = entries[0].identifier
    text = identifier.decode() if isinstance(identifier, bytes) else str(identifier)
    return int(text.split("-", 1)[0])


async def read_stream_after(
    client: Client, stream_key: str, after_seq: int, timeout_s: float = EVENTS_TIMEOUT_S
) -> list[bytes]:
    """The entries `publish_events` stored in `stream_key` with seq > `after_seq`, in order."""
    with bounded(client, timeout_s):
        entries = await client.xrange(stream_key, f"{max(after_seq, 0) + 1}-0", "+")
    found = (entry.field_values.get(b"e") for entry in entries)
    return [value for value in found if isinstance(value, bytes)]


class ChannelSubscription:
    """The messages of one subscribed channel; see `open_subscription`."""

    def __init__(self, pubsub: coredis.patterns.pubsub.PubSub[bytes]) -> None:
        self._pubsub = pubsub

    async def receive(self) -> bytes:
        """The next message's payload; waits for one."""
        with map_redis_errors():
            while True:
                message = await self._pubsub.get_message()
                if message is not None and message["type"] == "message":
                    data = message["data"]
                    return data if isinstance(data, bytes) else str(data).encode()


# Connecting a dedicated connection and the SUBSCRIBE round trip.
SUBSCRIBE_TIMEOUT_S: Final = 3.0


@contextlib.asynccontextmanager
async def open_subscription(
    client: Client, channel: str, timeout_s: float = SUBSCRIBE_TIMEOUT_S
) -> AsyncIterator[ChannelSubscription]:
    """Subscribe one dedicated connection to `channel`; unsubscribe and release it on exit.

    Returns once Redis has acknowledged the subscription, or raises `RedisUnavailable` when
    that takes longer than `timeout_s` (a silent network). coredis's own silent reconnect is
    turned off: a lost connection cancels the body and raises `RedisUnavailable` here, and
    the caller decides how to back off (`events.RedisBus.serve_fanout`).
    """
    with map_redis_errors(), unwrapping_sole_exception():  # the pubsub is a nursery
        # The deadline covers subscribing only; it is lifted once the body starts.
        with trio.CancelScope(deadline=trio.current_time() + timeout_s) as subscribing:
            async with client.pubsub(
                channels=[channel], ignore_subscribe_messages=True, retry_policy=None
            ) as pubsub:
                subscribing.deadline = math.inf
                yield ChannelSubscription(pubsub)
        if subscribing.cancelled_caught:
            raise RedisUnavailable(f"redis: no subscription within {timeout_s:g} s")


# --- Feature flags (lumiku.flags) --------------------------------------------------------

FLAGS_TIMEOUT_S: Final = 2.0


async def flags_read(
    client: Client, key: str, timeout_s: float = FLAGS_TIMEOUT_S
) -> dict[str, str]:
    """The runtime flag overrides: the hash at `key` as text."""
    with bounded(client, timeout_s):
        raw = await client.hgetall(key)
    return {_text(name): _text(value) for name, value in raw.items()}


async def flags_write(
    client: Client,
    key: str,
    channel: str,
    name: str,
    value: str | None,
    timeout_s: float = FLAGS_TIMEOUT_S,
) -> None:
    """Set (or with None delete) one override, then announce it on `channel`."""
    with bounded(client, timeout_s):
        if value is None:
            await client.hdel(key, [name])
        else:
            await client.hset(key, {name: value})
        await client.publish(channel, name)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
