"""How a background task lives through an outage of the database or Redis (SPEC §1).

```
a task's loop                          Retrying(task)
  try: one step / hold a connection      succeeded()  → count reset, `service.task_recovered`
  except DEPENDENCY_ERRORS as exc:       failed(exc)  → `service.task_retrying` (task, error,
      await retrying.wait_after(exc)                     attempt, retry_in_s), the task listed
                                                         in TaskTroubles, the next delay
  retrying.call(step)                    both of the above until `step` returns
```

An outage is never a reason to end the process: only start-up may fail on an unreachable
dependency. `DEPENDENCY_ERRORS` is what an outage looks like to our code: the adapters'
`DatabaseError` and `RedisUnavailable`, and the socket errors and timeouts a call might still
let through. Delays grow exponentially from `Backoff.min_s`, capped at `Backoff.max_s`, with
equal jitter (half fixed, half random), so instances that lost the same server do not all
come back in the same instant. `TaskTroubles` lists the tasks failing right now, for
`/health/detailed`.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING, Any, Final, TypeVar

import attrs
import trio

from lumiku.errors import DatabaseError, RedisUnavailable
from lumiku.observability.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

log = get_logger(__name__)

T = TypeVar("T")

DEPENDENCY_ERRORS: Final = (
    DatabaseError,
    RedisUnavailable,
    OSError,  # includes TimeoutError
    trio.TooSlowError,
)
BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 10.0


@attrs.frozen
class Backoff:
    """Capped exponential delays with equal jitter: the n-th consecutive failure waits
    between half and all of `min(min_s * 2**(n-1), max_s)`. `rng` is injectable (tests)."""

    min_s: float = BACKOFF_MIN_S
    max_s: float = BACKOFF_MAX_S
    rng: Callable[[], float] = attrs.field(default=random.random, eq=False)

    def __attrs_post_init__(self) -> None:
        if not 0 < self.min_s <= self.max_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s, not {self.min_s}, {self.max_s}")

    def delay_s(self, failures: int) -> float:
        """The wait after `failures` consecutive failures (≥ 1)."""
        ceiling = min(self.min_s * 2.0 ** min(max(failures - 1, 0), 62), self.max_s)
        return ceiling / 2 + self.rng() * ceiling / 2


@attrs.frozen
class Trouble:
    """What a failing task last reported."""

    error: str
    attempt: int
    since: float  # trio time of the first failure in this run of failures


@attrs.define
class TaskTroubles:
    """The background tasks failing right now (one per process, held by `Deps`)."""

    failing: dict[str, Trouble] = attrs.field(factory=dict)

    def report(self, task: str, error: str, attempt: int) -> None:
        since = self.failing[task].since if task in self.failing else trio.current_time()
        self.failing[task] = Trouble(error, attempt, since)

    def clear(self, task: str) -> None:
        self.failing.pop(task, None)

    def snapshot(self) -> dict[str, Any]:
        """`{status: ok | degraded, failing: {task: {error, attempt, for_s}}}`."""
        now = trio.current_time()
        failing = {
            task: {"error": t.error, "attempt": t.attempt, "for_s": round(now - t.since, 3)}
            for task, t in sorted(self.failing.items())
        }
        return {"status": "degraded" if failing else "ok", "failing": failing}


@attrs.define
class Retrying:
    """One task's run of failures: logs each, reports it to `troubles`, says how long to
    wait; the first success after failures logs the recovery and clears the report."""

    task: str
    troubles: TaskTroubles | None = None
    backoff: Backoff = attrs.field(factory=Backoff)
    failures: int = 0

    def failed(
        self,
        error: BaseException,
        *,
        at_least_s: float = 0.0,
        at_most_s: float = math.inf,
        **fields: Any,
    ) -> float:
        """Log `service.task_retrying` and report the trouble; returns the delay to wait:
        the backoff's, kept within `at_least_s`…`at_most_s` for a task with a schedule of
        its own (a heartbeat must not fall behind its lease)."""
        self.failures += 1
        delay_s = min(max(self.backoff.delay_s(self.failures), at_least_s), at_most_s)
        message = str(error) or type(error).__name__
        log.warning(
            "service.task_retrying",
            task=self.task,
            error=message,
            error_type=type(error).__name__,
            attempt=self.failures,
            retry_in_s=round(delay_s, 3),
            **fields,
        )
        if self.troubles is not None:
            self.troubles.report(self.task, message, self.failures)
        return delay_s

    async def wait_after(self, error: BaseException, **fields: Any) -> None:
        """`failed`, then sleep the delay."""
        await trio.sleep(self.failed(error, **fields))

    def succeeded(self) -> None:
        if self.failures:
            log.info("service.task_recovered", task=self.task, attempts=self.failures)
            self.failures = 0
            if self.troubles is not None:
                self.troubles.clear(self.task)

    async def call(self, step: Callable[[], Awaitable[T]]) -> T:
        """Await `step()` until it returns, backing off after each dependency error; any
        other error propagates."""
        while True:
            try:
                result = await step()
            except DEPENDENCY_ERRORS as exc:
                await self.wait_after(exc)
            else:
                self.succeeded()
                return result
