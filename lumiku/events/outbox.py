"""Group commit for the shared bus: every event published while a Redis write is in flight
goes out with the next one, in ONE call, so Redis costs one round trip per batch instead of
one per event (one awaited call per event cost ~0.4 ms of CPU each and, at 1000 events/s,
most of the live-progress latency: bench/README.md, event_latency).

No background task: the first sender writes (it "leads"), taking everything queued, batch
after batch, until its own item is written; then it hands the lead to the oldest waiter
still queued, or releases it. One leader at a time keeps each job's events in the order
they were published. Each sender gets its own answer, or the error its batch raised.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Generic, TypeVar

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

T = TypeVar("T")
R = TypeVar("R")

MAX_BATCH: Final = 256


class Interrupted(Exception):
    """The batch holding this item was cancelled mid-write: its outcome is unknown."""


@attrs.define(eq=False)
class _Pending(Generic[T, R]):
    item: T
    woken: trio.Event = attrs.field(factory=trio.Event)  # written, or handed the lead
    finished: bool = False
    result: R | None = None
    error: BaseException | None = None


class Outbox(Generic[T, R]):
    """`send(item)` from any task; `write(items)` answers one result per item, in order."""

    def __init__(
        self, write: Callable[[list[T]], Awaitable[Sequence[R]]], max_batch: int = MAX_BATCH
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._queue: list[_Pending[T, R]] = []
        self._leading = False

    async def send(self, item: T) -> R:
        pending: _Pending[T, R] = _Pending(item)
        self._queue.append(pending)
        if self._leading:
            try:
                await pending.woken.wait()
            except BaseException:  # cancelled while queued: withdraw, pass on a handed lead
                if not pending.finished:
                    self._queue.remove(pending)
                    if pending.woken.is_set():
                        self._hand_over()
                raise
        else:
            self._leading = True
        if not pending.finished:  # ours is the lead now
            try:
                while not pending.finished:
                    batch = self._queue[: self._max_batch]
                    del self._queue[: self._max_batch]
                    await self._write_batch(batch)
            finally:
                if not pending.finished:  # cancelled before its own batch went out
                    self._queue.remove(pending)
                self._hand_over()
        if pending.error is not None:
            raise pending.error
        return pending.result  # type: ignore[return-value]

    def _hand_over(self) -> None:
        if self._queue:
            self._queue[0].woken.set()  # the oldest waiter leads next; still leading
        else:
            self._leading = False

    async def _write_batch(self, batch: list[_Pending[T, R]]) -> None:
        answered = False
        try:
            results = await self._write([p.item for p in batch])
            for pending, result in zip(batch, results, strict=True):
                pending.result = result
            answered = True
        except Exception as exc:  # every sender of the batch gets it
            for pending in batch:
                pending.error = exc
            answered = True
        finally:
            for pending in batch:
                if not answered:
                    pending.error = Interrupted("the batch was cancelled mid-write")
                pending.finished = True
                pending.woken.set()
