"""The circuit breaker in front of every HTTP provider (SPEC §9).

```
closed ──(failures consecutive failures)──▶ open ──(reset_s later)──▶ half_open
   ▲                                          ▲                          │
   └───────────── probe succeeded ────────────┼──────── probe failed ────┘
```

- closed: every call goes through. A failure adds to the streak; a success, or an answer
  that is the caller's fault (`Permanent`: a 4xx means the upstream is up and talking),
  resets it. `failures` consecutive failures open the breaker.
- open: calls are refused at once, without touching the upstream, with
  `ProviderUnavailable(retry_after_s=<time left>)`: the job queue holds the job rather than
  failing it. Workers ask `is_available()` first and leave such jobs queued.
- half_open (`reset_s` after opening): exactly one call at a time goes through as the probe;
  others are refused like in open. The probe's success closes the breaker, its failure
  opens it again for another `reset_s`; a probe that ends neither way (cancelled, or a
  neutral outcome such as a model that is still loading) frees the slot for the next one.

Failures are `Transient`, `RateLimitedUpstream`, `trio.TooSlowError` and any other
exception; `classify` may call an outcome `NEUTRAL` instead (it then counts for nothing).
Outcomes of calls that started before the breaker last opened are ignored: only the probe
decides in half_open.

Time is trio's clock (`trio.current_time()`), so tests drive it with `autojump_clock`.
Observers (`on_change`) are called synchronously on every state change, for logs and metrics.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Final, Literal, TypeVar

import attrs
import trio

from lumiku.errors import Permanent, ProviderUnavailable
from lumiku.observability.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")
State = Literal["closed", "open", "half_open"]
STATES: Final = ("closed", "open", "half_open")
PROBE_BUSY_RETRY_S: Final = 5.0  # how long a job refused while a probe runs is held


class Outcome(enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"
    NEUTRAL = "neutral"


def default_classify(error: BaseException) -> Outcome:
    """`Permanent` (the upstream answered; the request was wrong) counts as a success for
    the breaker; anything else is a failure."""
    return Outcome.SUCCESS if isinstance(error, Permanent) else Outcome.FAILURE


@attrs.frozen
class Transition:
    breaker: str
    old: State
    new: State
    at: float  # trio.current_time()


Observer = Callable[[Transition], None]


@attrs.define
class Breaker:
    """One provider's breaker. Not thread-safe: use it from trio tasks of one run."""

    name: str
    failures: int = 5
    reset_s: float = 60.0
    classify: Callable[[BaseException], Outcome] = default_classify
    _state: State = attrs.field(default="closed", init=False)
    _streak: int = attrs.field(default=0, init=False)
    _opened_at: float = attrs.field(default=0.0, init=False)
    _epoch: int = attrs.field(default=0, init=False)  # +1 each time it opens
    _probing: bool = attrs.field(default=False, init=False)
    _observers: list[Observer] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        if self.failures < 1 or self.reset_s <= 0:
            raise ValueError("a breaker needs failures >= 1 and reset_s > 0")

    def on_change(self, observer: Observer) -> None:
        """Call `observer(Transition)` on every state change from now on."""
        self._observers.append(observer)

    @property
    def state(self) -> State:
        """The current state; an open breaker whose reset time has passed is half_open."""
        if self._state == "open" and trio.current_time() >= self._opened_at + self.reset_s:
            self._move("half_open")
        return self._state

    @property
    def streak(self) -> int:
        """Consecutive failures counted so far (0 after a success)."""
        return self._streak

    def is_available(self) -> bool:
        """Whether a call made now would go through: closed, or half_open with no probe in
        flight. Cheap (no I/O); workers ask it before claiming a job for this provider."""
        state = self.state
        return state == "closed" or (state == "half_open" and not self._probing)

    def retry_after_s(self) -> float:
        """How long a refused call should wait: the time left while open, a short hold while
        a probe runs, 0 when calls go through."""
        state = self.state
        if state == "open":
            return max(self._opened_at + self.reset_s - trio.current_time(), 0.0)
        if state == "half_open" and self._probing:
            return PROBE_BUSY_RETRY_S
        return 0.0

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """`await fn()` if the breaker lets it through, recording its outcome; otherwise
        raise ProviderUnavailable without calling it. `fn`'s own exception propagates."""
        state = self.state
        if not self.is_available():
            raise ProviderUnavailable(
                f"provider {self.name} is unavailable (circuit breaker {state})",
                retry_after_s=self.retry_after_s(),
            )
        probe = state == "half_open"
        if probe:
            self._probing = True
        epoch = self._epoch
        try:
            result = await fn()
        except Exception as error:
            self._record(self.classify(error), epoch, probe)
            raise
        finally:
            if probe:
                self._probing = False
        self._record(Outcome.SUCCESS, epoch, probe)
        return result

    def _record(self, outcome: Outcome, epoch: int, probe: bool) -> None:
        if outcome is Outcome.NEUTRAL:
            return
        if self._state != "closed" and not probe:
            return  # a call from before the breaker opened; only the probe decides now
        if epoch != self._epoch:
            return  # started before the latest opening
        if outcome is Outcome.SUCCESS:
            self._streak = 0
            if self._state != "closed":
                self._move("closed")
            return
        self._streak += 1
        if probe or self._streak >= self.failures:
            self._opened_at = trio.current_time()
            self._epoch += 1
            self._move("open")

    def _move(self, new: State) -> None:
        old, self._state = self._state, new
        if new == "closed":
            self._streak = 0
        transition = Transition(self.name, old, new, trio.current_time())
        level = log.warning if new == "open" else log.info
        level("provider.breaker", provider=self.name, old=old, new=new, streak=self._streak)
        for observer in tuple(self._observers):
            try:
                observer(transition)
            except Exception:  # an observer's bug must not break the provider
                log.exception("provider.breaker_observer_failed", provider=self.name)
