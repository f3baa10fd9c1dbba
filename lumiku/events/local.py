"""The events one process holds: its subscribers and its per-job replay rings.

`Subscribers` is the registry of this instance's websocket/SSE clients, by user. Delivery
never waits: each `Subscription` has a bounded buffer, and a client whose buffer is full is
marked overflowed and skipped from then on (the websocket handler closes it with 1013), so
one slow reader never slows the publisher or anyone else.

`JobRings` keeps the recent events of each job for replay, capped by count and by age on
trio's clock (tests use `autojump_clock`); jobs idle for longer than the age cap are dropped
whole, and so is the longest-idle job beyond `max_jobs`, so memory stays bounded.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Final

import trio

from lumiku.errors import LumikuError
from lumiku.events.model import Event

if TYPE_CHECKING:
    from collections.abc import Iterable
    from types import TracebackType

BUFFER_EVENTS: Final = 256
RING_EVENTS: Final = 1000
RING_AGE_S: Final = 3600.0
RING_JOBS: Final = 10_000


class Overflowed(LumikuError):
    """A subscriber did not keep up: its buffer filled, and it no longer receives events."""


class Subscription:
    """One client's view of one user's events (optionally of one job), in publish order.

    Use as `async with bus.subscribe_user(user_id) as sub:`; entering registers it, leaving
    unregisters it and closes its buffer. Within a subscription each job's events are
    delivered at most once and in increasing `seq`: an event whose seq is not above the
    last one delivered (or `accept`ed, or declared seen by `resume_from`) is skipped.
    """

    def __init__(
        self, registry: Subscribers, user_id: str, job_id: str | None, capacity: int
    ) -> None:
        self.user_id = user_id
        self.job_id = job_id
        self._registry = registry
        self._send, self._receive = trio.open_memory_channel[Event](capacity)
        self._overflowed = False
        self._last_seq: dict[str, int] = {}

    @property
    def overflowed(self) -> bool:
        """True once an event found the buffer full; `receive()` then raises `Overflowed`."""
        return self._overflowed

    async def __aenter__(self) -> Subscription:
        self._registry.add(self)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._registry.discard(self)
        self._send.close()
        self._receive.close()

    async def receive(self) -> Event:
        """The next new event; waits for one. Raises `Overflowed` once the buffer filled up
        (even if events are still buffered: the client is to be closed)."""
        while True:
            event = await self.receive_candidate()
            if self.accept(event):
                return event

    async def receive_candidate(self) -> Event:
        """The next buffered event, new or not; waits for one. For a sender that replays
        too: `accept` it under the lock that orders the client's sends, so a replay sent
        meanwhile cannot make it a duplicate. Raises `Overflowed` as `receive()` does."""
        if self._overflowed:
            raise Overflowed(f"subscriber of user {self.user_id} fell behind")
        return await self._receive.receive()

    def receive_nowait(self) -> Event:
        """The next new event already buffered; raises `trio.WouldBlock` when there is none,
        `Overflowed` as `receive()` does."""
        while True:
            if self._overflowed:
                raise Overflowed(f"subscriber of user {self.user_id} fell behind")
            event = self._receive.receive_nowait()
            if self.accept(event):
                return event

    def resume_from(self, job_id: str, after_seq: int) -> None:
        """Declare that the client has seen `job_id`'s events up to `after_seq`, no further:
        call before sending a replay, then send the replayed events that `accept`."""
        self._last_seq[job_id] = after_seq

    def seen(self, job_id: str) -> int:
        """The highest seq of `job_id` the client has seen (0 when none)."""
        return self._last_seq.get(job_id, 0)

    def accept(self, event: Event) -> bool:
        """True when `event` is new to this client (its seq is above the last one seen for
        its job), recording it as seen; False for a duplicate or a stale event."""
        if event.seq <= self._last_seq.get(event.job_id, 0):
            return False
        self._last_seq[event.job_id] = event.seq
        return True

    def offer_nowait(self, event: Event) -> bool:
        """Buffer `event` without waiting; False (and overflowed from now on) when full."""
        if self._overflowed:
            return False
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self._overflowed = True
            return False
        except trio.ClosedResourceError:
            return False
        return True


class Subscribers:
    """This process's subscriptions by user, with delivery counters."""

    def __init__(self, capacity: int = BUFFER_EVENTS) -> None:
        if capacity < 1:
            raise ValueError("a subscription buffer holds at least one event")
        self.capacity = capacity
        self._by_user: dict[str, set[Subscription]] = {}
        self.delivered = 0
        self.dropped_overflow = 0
        self.overflows = 0

    def __len__(self) -> int:
        return sum(len(subs) for subs in self._by_user.values())

    def subscribe(self, user_id: str, *, job_id: str | None = None) -> Subscription:
        """A new subscription (registered when entered) to `user_id`'s events, or to one of
        their jobs' events when `job_id` is given."""
        return Subscription(self, user_id, job_id, self.capacity)

    def add(self, subscription: Subscription) -> None:
        self._by_user.setdefault(subscription.user_id, set()).add(subscription)

    def discard(self, subscription: Subscription) -> None:
        subs = self._by_user.get(subscription.user_id)
        if subs is not None:
            subs.discard(subscription)
            if not subs:
                del self._by_user[subscription.user_id]

    def dispatch(self, event: Event) -> None:
        """Offer `event` to every subscription of its user (and job); never waits."""
        for sub in self._by_user.get(event.user_id, ()):
            if sub.job_id is not None and sub.job_id != event.job_id:
                continue
            was_overflowed = sub.overflowed
            if sub.offer_nowait(event):
                self.delivered += 1
            elif sub.overflowed:
                self.dropped_overflow += 1
                self.overflows += not was_overflowed


class JobRings:
    """The last `max_events` events of each job not older than `max_age_s`, for replay."""

    def __init__(
        self,
        max_events: int = RING_EVENTS,
        max_age_s: float = RING_AGE_S,
        max_jobs: int = RING_JOBS,
    ) -> None:
        self.max_events = max_events
        self.max_age_s = max_age_s
        self.max_jobs = max_jobs
        # job id → [(trio time added, event)], least recently added-to job first
        self._jobs: collections.OrderedDict[str, collections.deque[tuple[float, Event]]] = (
            collections.OrderedDict()
        )

    def __len__(self) -> int:
        """How many jobs are held."""
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        """Whether events of `job_id` are held (expired ones not yet dropped included)."""
        return job_id in self._jobs

    def add(self, event: Event) -> None:
        now = trio.current_time()
        ring = self._jobs.get(event.job_id)
        if ring is None:
            ring = self._jobs[event.job_id] = collections.deque(maxlen=self.max_events)
        else:
            self._jobs.move_to_end(event.job_id)
        ring.append((now, event))
        self._expire(now)

    def last_seq(self, job_id: str) -> int:
        """The highest seq held for `job_id`, 0 when none."""
        held = self.replay(job_id, 0)
        return held[-1].seq if held else 0

    def replay(self, job_id: str, after_seq: int) -> list[Event]:
        """The held events of `job_id` with seq > `after_seq`, in seq order."""
        horizon = trio.current_time() - self.max_age_s
        return in_seq_order(
            event
            for added, event in self._jobs.get(job_id, ())
            if added > horizon and event.seq > after_seq
        )

    def _expire(self, now: float) -> None:
        horizon = now - self.max_age_s
        while self._jobs:
            job_id, ring = next(iter(self._jobs.items()))
            if ring[-1][0] > horizon and len(self._jobs) <= self.max_jobs:
                break
            del self._jobs[job_id]
        # The job just added to is last; trim its own expired head.
        if self._jobs:
            ring = next(reversed(self._jobs.values()))
            while ring and ring[0][0] <= horizon:
                ring.popleft()


def in_seq_order(events: Iterable[Event]) -> list[Event]:
    """`events` sorted by seq, one per seq (the last one seen wins)."""
    return sorted({event.seq: event for event in events}.values(), key=lambda e: e.seq)
