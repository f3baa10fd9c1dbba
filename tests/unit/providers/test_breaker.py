"""The circuit breaker's state machine (SPEC §9), on trio's virtual clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from lumiku.errors import Permanent, ProviderUnavailable, RateLimitedUpstream, Transient
from lumiku.providers.breaker import PROBE_BUSY_RETRY_S, Breaker, Outcome, Transition


class Upstream:
    """Counts calls; each call fails with `error` (when set) or returns "ok"."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: BaseException | None = None

    async def __call__(self) -> str:
        self.calls += 1
        await trio.lowlevel.checkpoint()
        if self.error is not None:
            raise self.error
        return "ok"


async def fail(breaker: Breaker, upstream: Upstream, times: int, error: Exception) -> None:
    upstream.error = error
    for _ in range(times):
        with pytest.raises(type(error)):
            await breaker.call(upstream)
    upstream.error = None


async def opened(failures: int = 3, reset_s: float = 60.0) -> tuple[Breaker, Upstream]:
    breaker, upstream = Breaker("hf", failures, reset_s), Upstream()
    await fail(breaker, upstream, failures, Transient("503"))
    assert breaker.state == "open"
    return breaker, upstream


async def test_n_consecutive_failures_open_it(autojump_clock: trio.testing.MockClock) -> None:
    breaker, upstream = Breaker("hf", failures=5, reset_s=60), Upstream()
    await fail(breaker, upstream, 4, Transient("500"))
    assert (breaker.state, breaker.streak, breaker.is_available()) == ("closed", 4, True)
    await fail(breaker, upstream, 1, Transient("500"))
    assert (breaker.state, breaker.is_available()) == ("open", False)
    assert upstream.calls == 5


async def test_rate_limits_and_timeouts_count_as_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, upstream = Breaker("hf", failures=3, reset_s=60), Upstream()
    await fail(breaker, upstream, 1, RateLimitedUpstream("429", retry_after_s=30))
    await fail(breaker, upstream, 1, trio.TooSlowError())
    await fail(breaker, upstream, 1, OSError("connection refused"))
    assert breaker.state == "open"


async def test_a_success_or_a_permanent_error_resets_the_streak(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, upstream = Breaker("hf", failures=3, reset_s=60), Upstream()
    await fail(breaker, upstream, 2, Transient("500"))
    assert await breaker.call(upstream) == "ok"
    assert breaker.streak == 0
    await fail(breaker, upstream, 2, Transient("500"))
    await fail(breaker, upstream, 5, Permanent("400: bad prompt"))  # the upstream answered
    assert (breaker.state, breaker.streak) == ("closed", 0)
    await fail(breaker, upstream, 2, Transient("500"))
    assert breaker.state == "closed"


async def test_open_refuses_without_calling_and_says_how_long(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, upstream = await opened(reset_s=60)
    await trio.sleep(15)
    with pytest.raises(ProviderUnavailable) as refused:
        await breaker.call(upstream)
    assert upstream.calls == 3
    assert refused.value.retry_after_s == pytest.approx(45)
    assert isinstance(refused.value, RateLimitedUpstream)  # the queue holds, never fails
    assert breaker.retry_after_s() == pytest.approx(45)


async def test_after_reset_one_probe_success_closes_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, upstream = await opened(reset_s=60)
    await trio.sleep(59.9)
    assert breaker.state == "open"
    await trio.sleep(0.1)
    assert (breaker.state, breaker.is_available()) == ("half_open", True)
    assert await breaker.call(upstream) == "ok"
    assert (breaker.state, breaker.streak, upstream.calls) == ("closed", 0, 4)


async def test_a_failed_probe_opens_it_again_for_another_reset(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, upstream = await opened(reset_s=60)
    await trio.sleep(60)
    await fail(breaker, upstream, 1, Transient("still down"))
    assert breaker.state == "open"
    assert breaker.retry_after_s() == pytest.approx(60)
    await trio.sleep(30)
    assert breaker.state == "open"
    await trio.sleep(30)
    assert breaker.state == "half_open"


async def test_half_open_lets_exactly_one_probe_through_at_a_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, _upstream = await opened(reset_s=60)
    await trio.sleep(60)
    release = trio.Event()
    calls = 0

    async def slow_probe() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "ok"

    refused: list[float] = []
    results: list[str] = []

    async def caller() -> None:
        try:
            results.append(await breaker.call(slow_probe))
        except ProviderUnavailable as exc:
            refused.append(exc.retry_after_s)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(caller)
        await trio.testing.wait_all_tasks_blocked()
        assert (calls, len(refused), breaker.is_available()) == (1, 4, False)
        assert breaker.retry_after_s() == PROBE_BUSY_RETRY_S
        release.set()
    assert refused == [PROBE_BUSY_RETRY_S] * 4
    assert results == ["ok"]
    assert breaker.state == "closed"


async def test_a_cancelled_or_neutral_probe_frees_the_slot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def classify(error: BaseException) -> Outcome:
        return Outcome.NEUTRAL if isinstance(error, LookupError) else Outcome.FAILURE

    breaker, upstream = Breaker("hf", 1, 10.0, classify=classify), Upstream()
    await fail(breaker, upstream, 1, Transient("down"))
    await trio.sleep(10)
    with trio.move_on_after(1):
        await breaker.call(trio.sleep_forever)
    assert (breaker.state, breaker.is_available()) == ("half_open", True)
    await fail(breaker, upstream, 1, KeyError("loading"))
    assert (breaker.state, breaker.is_available()) == ("half_open", True)
    assert await breaker.call(upstream) == "ok"
    assert breaker.state == "closed"


async def test_calls_started_before_it_opened_do_not_decide(
    autojump_clock: trio.testing.MockClock,
) -> None:
    breaker, upstream = Breaker("hf", 2, 60.0), Upstream()
    stalled_done = trio.Event()

    async def stalled() -> str:
        await trio.sleep(100)
        raise Transient("late failure")

    async def late_caller() -> None:
        with pytest.raises(Transient):
            await breaker.call(stalled)
        stalled_done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(late_caller)
        await trio.testing.wait_all_tasks_blocked()
        await fail(breaker, upstream, 2, Transient("down"))  # opens at t0
        opened_at = trio.current_time()
        await trio.sleep(70)  # half-open now; the stalled call fails at t0 + 100
        assert breaker.state == "half_open"
        await stalled_done.wait()
    assert breaker.state == "half_open"  # not re-opened by a call from before
    assert trio.current_time() - opened_at >= 100
    assert await breaker.call(upstream) == "ok"
    assert breaker.state == "closed"


async def test_observers_see_every_transition_and_cannot_break_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[str, str]] = []

    def observer(t: Transition) -> None:
        seen.append((t.old, t.new))

    def broken(_t: Transition) -> None:
        raise RuntimeError("metrics bug")

    breaker, upstream = Breaker("hf", 1, 5.0), Upstream()
    breaker.on_change(broken)
    breaker.on_change(observer)
    await fail(breaker, upstream, 1, Transient("down"))
    await trio.sleep(5)
    await fail(breaker, upstream, 1, Transient("still down"))
    await trio.sleep(5)
    await breaker.call(upstream)
    assert seen == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_it_needs_a_positive_threshold_and_reset() -> None:
    with pytest.raises(ValueError, match="failures"):
        Breaker("hf", failures=0)
    with pytest.raises(ValueError, match="reset_s"):
        Breaker("hf", reset_s=0)
