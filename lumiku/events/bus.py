"""The event bus: publish a job's events, deliver them to its owner's sockets, replay them.

```
InProcessBus (embedded)        publish → JobRings + local Subscribers
RedisBus (scale-out, §15)      publish → local Subscribers + JobRings (this instance)
                                       → XADD lumiku:events:job:<id> + PUBLISH lumiku:events
                               serve_fanout: ONE subscription to lumiku:events per instance
                                       → local Subscribers (other instances' events only)
```

Why RedisBus delivers locally itself and skips its own messages in the fan-out (rather than
delivering only through the fan-out): the sockets on the instance that runs a job then get
its events at once and in order whether or not Redis, or just this instance's subscription,
is up (SPEC §7: Redis down → events still reach sockets on the instance running the job), and
nothing is delivered twice. Each published message carries the publisher's `instance_id`,
which must be unique per process (make one with `uuid.uuid4().hex` at start-up).

Why RedisBus keeps a backlog: an event that could not reach Redis (an outage, or the
breaker skipping Redis after one) would leave a gap in its job's stream, and another
instance replaying it would skip straight from before the outage to what came after. So
the bus keeps those events (in order, at most `BACKLOG_EVENTS`, the oldest dropped first
and logged) and writes them ahead of its next batch once Redis answers; `flush()` (the
reaper's restore pass, `jobs.restore`) writes them when nothing else is published. A
stream that got a later event first (another instance restored the job's terminal event)
takes them in place. What a killed instance kept is lost with it: replay elsewhere then
misses those events, and clients learn the state from the snapshot, the job row.
"""

from __future__ import annotations

import itertools
import json
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol, TypeAlias

import attrs
import trio

from lumiku import redis
from lumiku.errors import RedisUnavailable
from lumiku.events.local import (
    BUFFER_EVENTS,
    RING_AGE_S,
    RING_EVENTS,
    JobRings,
    Subscribers,
    Subscription,
    in_seq_order,
)
from lumiku.events.model import SNAPSHOT, Event
from lumiku.events.outbox import Interrupted, Outbox
from lumiku.observability.logging import get_logger
from lumiku.retrying import DEPENDENCY_ERRORS, Backoff, Retrying

if TYPE_CHECKING:
    from collections.abc import Sequence

    from lumiku.redis import Client
    from lumiku.retrying import TaskTroubles

log = get_logger(__name__)

CHANNEL: Final = "lumiku:events"
STREAM_PREFIX: Final = "lumiku:events:job:"
BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 5.0
BACKLOG_EVENTS: Final = 10_000
BACKLOG_BATCH: Final = 1000  # backlog events written ahead of one outbox batch

# (stream key, seq, stream entry, channel message): one event as `redis.publish_events`
# takes it.
Item: TypeAlias = tuple[str, int, str, str]


@attrs.define
class Breaker:
    """Stops calling Redis for a while after a failure, so a Redis that hangs (rather than
    refusing) costs one timeout, not one per event: open for `min_s` after a failure,
    doubling to `max_s` while calls keep failing, closed by the first success."""

    min_s: float
    max_s: float
    _open_until: float = float("-inf")
    _open_s: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._open_s = self.min_s

    def allows(self) -> bool:
        return trio.current_time() >= self._open_until

    def failed(self) -> None:
        self._open_until = trio.current_time() + self._open_s
        self._open_s = min(self._open_s * 2, self.max_s)

    def succeeded(self) -> None:
        self._open_s = self.min_s

    def close(self) -> None:
        """Redis answered elsewhere (the fan-out subscribed again): call it again now."""
        self._open_until = float("-inf")
        self._open_s = self.min_s


@attrs.frozen
class BusStatistics:
    """A snapshot of a bus's counters (for metrics) and state (for readiness)."""

    published: int
    delivered: int
    dropped_overflow: int
    overflows: int
    redis_failures: int
    redis_skipped: int  # calls not made while the breaker was open
    subscribers: int
    fanout_connected: bool | None  # None: no Redis (in-process bus)
    backlog: int = 0  # events published while Redis was unreachable, not written yet
    backlog_dropped: int = 0  # backlog events dropped (it was full): gaps in their streams


class EventBus(Protocol):
    async def publish(self, event: Event) -> None:
        """Deliver `event` to its user's subscribers and keep it for replay. Never raises
        for an unavailable Redis (it degrades to this instance), never waits for a client."""

    def subscribe_user(self, user_id: str, *, job_id: str | None = None) -> Subscription:
        """A subscription to `user_id`'s events (only `job_id`'s when given), registered
        while entered: `async with bus.subscribe_user(uid) as sub:`."""

    async def replay(self, job_id: str, after_seq: int) -> list[Event]:
        """The kept events of `job_id` with seq > `after_seq`, in seq order."""

    async def last_seq(self, job_id: str) -> int:
        """The highest seq kept for `job_id` (0 when none): what a job's dead worker got to
        publish. Never raises (degrades to this instance's memory)."""

    async def restore(self, events: Sequence[Event]) -> int:
        """Publish those of `events` that the shared replay store lacks (their publisher
        died between its commit and its publish, or Redis was down), never one twice;
        returns how many. Raises `RedisUnavailable`."""

    async def flush(self) -> int:
        """Write to the shared replay store the events this instance published while it
        was unreachable (`RedisBus`'s backlog); returns how many went out. Raises
        `RedisUnavailable` (what is left stays for the next call)."""

    async def serve_fanout(
        self,
        *,
        troubles: TaskTroubles | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        """Bring other instances' events to this instance's subscribers until cancelled
        (a lost subscription is listed in `troubles` until it is back)."""

    def statistics(self) -> BusStatistics: ...


def _check_publishable(event: Event) -> None:
    if event.type == SNAPSHOT:
        raise ValueError("a snapshot is sent to one client, never published")
    if event.seq < 1:
        raise ValueError(f"published events have seq ≥ 1, not {event.seq}")


class InProcessBus:
    """The embedded bus: one process, events kept in memory (`JobRings`)."""

    def __init__(
        self,
        *,
        buffer_events: int = BUFFER_EVENTS,
        ring_events: int = RING_EVENTS,
        ring_age_s: float = RING_AGE_S,
    ) -> None:
        self.subscribers = Subscribers(buffer_events)
        self.rings = JobRings(ring_events, ring_age_s)
        self._published = 0

    async def publish(self, event: Event) -> None:
        _check_publishable(event)
        self._published += 1
        self.rings.add(event)
        self.subscribers.dispatch(event)

    def subscribe_user(self, user_id: str, *, job_id: str | None = None) -> Subscription:
        return self.subscribers.subscribe(user_id, job_id=job_id)

    async def replay(self, job_id: str, after_seq: int) -> list[Event]:
        return self.rings.replay(job_id, after_seq)

    async def last_seq(self, job_id: str) -> int:
        return self.rings.last_seq(job_id)

    async def restore(self, events: Sequence[Event]) -> int:
        """Nothing to restore: what this process published cannot have been lost, and what
        a crashed process kept in memory is gone (clients recover through the snapshot)."""
        return 0

    async def flush(self) -> int:
        """Nothing to flush: there is no shared store to fall behind."""
        return 0

    async def serve_fanout(
        self,
        *,
        troubles: TaskTroubles | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        """Nothing to fan out within one process: reports started, then waits forever."""
        task_status.started()
        await trio.sleep_forever()

    def statistics(self) -> BusStatistics:
        return BusStatistics(
            published=self._published,
            delivered=self.subscribers.delivered,
            dropped_overflow=self.subscribers.dropped_overflow,
            overflows=self.subscribers.overflows,
            redis_failures=0,
            redis_skipped=0,
            subscribers=len(self.subscribers),
            fanout_connected=None,
        )


class RedisBus:
    """The shared bus: a capped stream per job for replay, one channel for live events.

    Streams live `ring_age_s` after a job's last event and keep about `ring_events` entries
    (at least that many: trimming is approximate). Redis calls time out after `timeout_s`;
    after a failure a `Breaker` skips them (local delivery and the ring only) for
    `backoff_min_s`, doubling to `backoff_max_s` while Redis keeps failing. Events that did
    not reach Redis wait in a backlog of at most `backlog_events` (module docstring).
    Pub/sub channels ignore the Redis database number, so deployments sharing one Redis
    server need different `channel`s.
    """

    def __init__(
        self,
        client: Client,
        instance_id: str,
        *,
        buffer_events: int = BUFFER_EVENTS,
        ring_events: int = RING_EVENTS,
        ring_age_s: float = RING_AGE_S,
        timeout_s: float = redis.EVENTS_TIMEOUT_S,
        backoff_min_s: float = BACKOFF_MIN_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        channel: str = CHANNEL,
        backlog_events: int = BACKLOG_EVENTS,
    ) -> None:
        self.instance_id = instance_id
        self.channel = channel
        self.subscribers = Subscribers(buffer_events)
        # This instance's own events: the replay fallback while Redis is down, and the
        # events published during an outage, which the streams never got.
        self.rings = JobRings(ring_events, ring_age_s)
        self._client = client
        self._ring_events = ring_events
        self._ttl_s = max(1, round(ring_age_s))
        self._timeout_s = timeout_s
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._published = 0
        self._redis_failures = 0
        self._redis_skipped = 0
        self._fanout_connected = False
        self._breaker = Breaker(backoff_min_s, backoff_max_s)
        # None: nothing to publish, only the backlog to write (`flush`)
        self._outbox: Outbox[Item | None, bool] = Outbox(self._write)
        # (stream key, seq) → item, oldest first
        self._backlog: dict[tuple[str, int], Item] = {}
        self._backlog_events = backlog_events
        self._backlog_dropped = 0
        self._backlog_written = 0

    def _redis_allowed(self) -> bool:
        if self._breaker.allows():
            return True
        self._redis_skipped += 1
        return False

    def _redis_failed(self) -> None:
        self._redis_failures += 1
        self._breaker.failed()

    async def publish(self, event: Event) -> None:
        """Deliver locally, keep in this instance's ring, then XADD + PUBLISH together with
        every event published meanwhile (`outbox`: one round trip per batch), after the
        backlog. Logs `events.publish_failed` (and counts it) when Redis is unavailable;
        the event then waits in the backlog."""
        _check_publishable(event)
        self._published += 1
        self.rings.add(event)
        self.subscribers.dispatch(event)
        record = event.to_record()
        message = json.dumps({"instance": self.instance_id, "event": record})
        item = (STREAM_PREFIX + event.job_id, event.seq, json.dumps(record), message)
        if not self._redis_allowed():
            self._keep([item])
            log.info("events.publish_skipped", job_id=event.job_id, seq=event.seq)
            return
        try:
            stored = await self._outbox.send(item)
        except (RedisUnavailable, Interrupted) as exc:
            log.warning("events.publish_failed", job_id=event.job_id, seq=event.seq, error=str(exc))
            return
        if not stored:
            log.warning("events.seq_not_stored", job_id=event.job_id, seq=event.seq)

    async def flush(self) -> int:
        """Write the backlog now (through the outbox, so in order with publishes), batch
        after batch; returns how many of its events went out. Raises `RedisUnavailable`
        while Redis fails or the breaker skips it."""
        written_before = self._backlog_written
        while self._backlog:
            if not self._redis_allowed():
                raise RedisUnavailable("Redis is skipped after a recent failure")
            try:
                await self._outbox.send(None)
            except Interrupted as exc:
                raise RedisUnavailable(str(exc)) from exc
        return self._backlog_written - written_before

    def _keep(self, items: Sequence[Item]) -> None:
        """Put `items` in the backlog (the first of a seq stays), dropping the oldest past
        its bound."""
        for item in items:
            self._backlog.setdefault((item[0], item[1]), item)
        excess = len(self._backlog) - self._backlog_events
        if excess > 0:
            for key in list(itertools.islice(self._backlog, excess)):
                del self._backlog[key]
            self._backlog_dropped += excess
            log.warning("events.backlog_dropped", count=excess, kept=len(self._backlog))

    async def _write(self, items: list[Item | None]) -> list[bool]:
        """One batch of the outbox, after up to `BACKLOG_BATCH` backlog events (each job's
        in seq order). On success those leave the backlog; on failure (counted once, for
        the batch) or cancellation the batch's new events join it."""
        fresh = [item for item in items if item is not None]
        backlog = sorted(
            itertools.islice(self._backlog.values(), BACKLOG_BATCH), key=lambda i: (i[0], i[1])
        )
        if not self._breaker.allows():  # an earlier batch failed meanwhile
            self._redis_skipped += len(fresh)
            self._keep(fresh)
            raise RedisUnavailable("Redis is skipped after a recent failure")
        written = False
        try:
            stored = await redis.publish_events(
                self._client,
                [*backlog, *fresh],
                self.channel,
                max_len=self._ring_events,
                ttl_s=self._ttl_s,
                timeout_s=self._timeout_s,
            )
            written = True
        except RedisUnavailable:
            self._redis_failed()
            raise
        finally:
            if not written:
                self._keep(fresh)
        self._breaker.succeeded()
        for item in backlog:
            self._backlog.pop((item[0], item[1]), None)
        if backlog:
            self._backlog_written += len(backlog)
            log.info("events.backlog_written", count=len(backlog), left=len(self._backlog))
        answers = iter(stored[len(backlog) :])
        return [True if item is None else next(answers) for item in items]

    def subscribe_user(self, user_id: str, *, job_id: str | None = None) -> Subscription:
        return self.subscribers.subscribe(user_id, job_id=job_id)

    async def replay(self, job_id: str, after_seq: int) -> list[Event]:
        """The job's stream after `after_seq`, merged with this instance's ring (which holds
        what was published here while Redis was down); the ring alone when Redis is down."""
        local = self.rings.replay(job_id, after_seq)
        if not self._redis_allowed():
            log.warning("events.replay_degraded", job_id=job_id, error="Redis skipped")
            return local
        try:
            entries = await redis.read_stream_after(
                self._client, STREAM_PREFIX + job_id, after_seq, self._timeout_s
            )
        except RedisUnavailable as exc:
            self._redis_failed()
            log.warning("events.replay_degraded", job_id=job_id, error=str(exc))
            return local
        self._breaker.succeeded()
        stored = []
        for entry in entries:
            try:
                stored.append(Event.from_json(json.loads(entry)))
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                log.warning("events.malformed_entry", job_id=job_id, error=str(exc))
        return in_seq_order([*stored, *local])

    async def last_seq(self, job_id: str) -> int:
        """The job stream's last seq, or this instance's ring's while Redis is down."""
        local = self.rings.last_seq(job_id)
        if not self._redis_allowed():
            return local
        try:
            stored = await redis.last_stream_seq(
                self._client, STREAM_PREFIX + job_id, self._timeout_s
            )
        except RedisUnavailable as exc:
            self._redis_failed()
            log.warning("events.last_seq_degraded", job_id=job_id, error=str(exc))
            return local
        self._breaker.succeeded()
        return max(local, stored)

    async def restore(self, events: Sequence[Event]) -> int:
        """Append and PUBLISH each of `events` only when its seq is above its stream's last
        entry, in one round trip; the restored ones also reach this instance's subscribers
        (the fan-out skips this instance's own messages)."""
        items = []
        for event in events:
            _check_publishable(event)
            record = event.to_record()
            message = json.dumps({"instance": self.instance_id, "event": record})
            items.append((STREAM_PREFIX + event.job_id, event.seq, json.dumps(record), message))
        if not self._redis_allowed():
            raise RedisUnavailable("Redis is skipped after a recent failure")
        try:
            restored = await redis.restore_events(
                self._client,
                items,
                self.channel,
                max_len=self._ring_events,
                ttl_s=self._ttl_s,
                timeout_s=self._timeout_s,
            )
        except RedisUnavailable:
            self._redis_failed()
            raise
        self._breaker.succeeded()
        for index in restored:
            event = events[index]
            if not self.rings.replay(event.job_id, event.seq - 1):  # not published here
                self.rings.add(event)
                self.subscribers.dispatch(event)
        return len(restored)

    async def serve_fanout(
        self,
        *,
        troubles: TaskTroubles | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> NoReturn:
        """Hold this instance's ONE subscription to its channel (`lumiku:events`) and hand
        each event from another instance to the local subscribers of its user, until
        cancelled.

        Reports started once subscribed, or after the first failed attempt (a Redis that is
        down at start-up must not stop the service from starting). When the subscription
        fails it logs `service.task_retrying` (task `events.fanout`), lists itself in
        `troubles`, waits (0.5 s doubling to 5 s, jittered, reset by a successful
        subscription) and subscribes again; events published meanwhile are missed live and
        recovered by clients through replay and the snapshot.
        """
        backoff = Backoff(self._backoff_min_s, self._backoff_max_s)
        retrying = Retrying("events.fanout", troubles, backoff)
        started = False
        while True:
            try:
                async with redis.open_subscription(self._client, self.channel) as subscription:
                    self._fanout_connected = True
                    self._breaker.close()
                    log.info("events.fanout_subscribed", channel=self.channel)
                    retrying.succeeded()
                    if not started:
                        started = True
                        task_status.started()
                    while True:
                        self._dispatch_message(await subscription.receive())
            except DEPENDENCY_ERRORS as exc:
                self._redis_failures += 1
                delay_s = retrying.failed(exc)
            finally:
                self._fanout_connected = False
            if not started:
                started = True
                task_status.started()
            await trio.sleep(delay_s)

    def _dispatch_message(self, payload: bytes) -> None:
        try:
            message: Any = json.loads(payload)
            if not isinstance(message, dict):
                raise ValueError("not a JSON object")
            instance = message.get("instance")
            event = Event.from_json(message.get("event"))
        except ValueError as exc:
            log.warning("events.malformed_message", error=str(exc))
            return
        if instance != self.instance_id:
            self.subscribers.dispatch(event)

    def statistics(self) -> BusStatistics:
        return BusStatistics(
            published=self._published,
            delivered=self.subscribers.delivered,
            dropped_overflow=self.subscribers.dropped_overflow,
            overflows=self.subscribers.overflows,
            redis_failures=self._redis_failures,
            redis_skipped=self._redis_skipped,
            subscribers=len(self.subscribers),
            fanout_connected=self._fanout_connected,
            backlog=len(self._backlog),
            backlog_dropped=self._backlog_dropped,
        )


def make_bus(client: Client | None, instance_id: str, **options: Any) -> EventBus:
    """`RedisBus` when Redis is configured, else `InProcessBus`; `options` go to either
    (`buffer_events`, `ring_events`, `ring_age_s`)."""
    if client is None:
        return InProcessBus(**options)
    return RedisBus(client, instance_id, **options)


async def serve_fanout(
    bus: EventBus,
    *,
    troubles: TaskTroubles | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """The supervisor's entry point: `await nursery.start(events.serve_fanout, deps.events)`.
    A no-op that waits forever for the in-process bus; see `RedisBus.serve_fanout`."""
    await bus.serve_fanout(troubles=troubles, task_status=task_status)
