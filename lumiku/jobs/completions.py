"""Group commit of the workers' successes: every job that succeeded with nothing to refund
while the previous write was in flight is written by the next one, in ONE fenced statement
(`transitions.complete_batch`).

Under load this turns one round trip per finished job into one per batch; alone, a job
waits for nothing but its own write. Each job still gets its own answer: its transition, or
None when its fence failed (another instance owns it now), or the error the write raised.
A job's task that stops waiting (its cleanup budget ran out while the database hung) does
not take its completion out of a write already under way: should that write still go
through, `on_late` gets the transition, so the job's terminal event is not lost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs
import trio

from lumiku.errors import DatabaseError
from lumiku.jobs import transitions

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from lumiku.db.store import Store
    from lumiku.jobs.models import Transition
    from lumiku.jobs.transitions import Completion

MAX_BATCH: Final = 500


@attrs.define(eq=False)
class _Waiting:
    completion: Completion
    done: trio.Event = attrs.field(factory=trio.Event)
    transition: Transition | None = None
    error: BaseException | None = None
    abandoned: bool = False  # its job's task stopped waiting for the answer


@attrs.define(eq=False)
class Completions:
    """The batcher: `complete` from any job's task, `serve` once in the workers' nursery
    (it must outlive every job that may call `complete`)."""

    store: Store
    max_batch: int = MAX_BATCH
    on_late: Callable[[Transition], Awaitable[None]] | None = None
    _waiting: list[_Waiting] = attrs.field(factory=list)
    _pending: trio.Event = attrs.field(factory=trio.Event)

    async def complete(self, completion: Completion) -> Transition | None:
        """Write `completion` with whatever else is waiting; None when its fence failed."""
        waiting = _Waiting(completion)
        self._waiting.append(waiting)
        self._pending.set()
        try:
            await waiting.done.wait()
        except BaseException:  # cancelled: the write may still go through (see `on_late`)
            waiting.abandoned = True
            raise
        if waiting.error is not None:
            raise waiting.error
        return waiting.transition

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._pending.wait()
            self._pending = trio.Event()
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                await self._write(batch)
                for waiting in batch:
                    if waiting.abandoned and waiting.transition and self.on_late is not None:
                        await self.on_late(waiting.transition)

    async def _write(self, batch: list[_Waiting]) -> None:
        answered = False
        try:
            done = await transitions.complete_batch(self.store, [w.completion for w in batch])
            for waiting in batch:
                waiting.transition = done.get(waiting.completion.job_id)
            answered = True
        except Exception as exc:  # each job's task gets the error its own write would raise
            for waiting in batch:
                waiting.error = exc
            answered = True
        finally:
            for waiting in batch:
                if not answered:  # cancelled mid-write: the outcome is unknown
                    waiting.error = DatabaseError("the write of the job's success was interrupted")
                waiting.done.set()
