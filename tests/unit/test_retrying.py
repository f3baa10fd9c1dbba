"""The shared way background tasks live through outages (`lumiku.retrying`) and the
supervisor's last line (`keep_serving`), on trio's virtual clock."""

from __future__ import annotations

import io
import json
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from lumiku.errors import RedisUnavailable, Unavailable
from lumiku.observability import logging as logs
from lumiku.retrying import Backoff, Retrying, TaskTroubles
from lumiku.supervisor import keep_serving


@pytest.fixture
def log_lines() -> Any:
    output = io.StringIO()
    logs.configure("info", "json", stream=output)

    def lines(event: str | None = None) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in output.getvalue().splitlines()]
        return [line for line in parsed if event is None or line["event"] == event]

    return lines


def test_backoff_doubles_up_to_its_cap_with_equal_jitter() -> None:
    low, high = Backoff(0.5, 10.0, rng=lambda: 0.0), Backoff(0.5, 10.0, rng=lambda: 0.999999)
    assert [low.delay_s(n) for n in range(1, 8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [round(high.delay_s(n), 3) for n in range(1, 8)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert Backoff(0.5, 10.0).delay_s(10_000) <= 10.0  # no overflow however long it lasts
    with pytest.raises(ValueError, match="min_s"):
        Backoff(0, 1)
    with pytest.raises(ValueError, match="min_s"):
        Backoff(2, 1)


async def test_call_backs_off_until_the_step_goes_through(
    autojump_clock: trio.testing.MockClock, log_lines: Any
) -> None:
    troubles = TaskTroubles()
    retrying = Retrying("demo.task", troubles, Backoff(1.0, 4.0, rng=lambda: 1.0))
    calls: list[float] = []
    seen: list[dict[str, Any]] = []

    async def step() -> str:
        calls.append(trio.current_time())
        if len(calls) <= 4:
            seen.append(troubles.snapshot())
            raise [Unavailable("db away"), RedisUnavailable("redis away"), OSError("reset")][
                min(len(calls) - 1, 2)
            ]
        return "done"

    start = trio.current_time()
    assert await retrying.call(step) == "done"
    assert [round(t - start, 3) for t in calls] == [0, 1, 3, 7, 11]  # 1, 2, 4, 4 (capped)
    assert seen[0]["status"] == "ok"  # nothing reported before the first failure
    assert seen[3]["failing"]["demo.task"]["attempt"] == 3
    assert seen[3]["failing"]["demo.task"]["for_s"] == 7.0  # since the first failure
    assert troubles.snapshot() == {"status": "ok", "failing": {}}  # cleared by the success
    retried = log_lines("service.task_retrying")
    assert [(r["task"], r["attempt"], r["retry_in_s"]) for r in retried] == [
        ("demo.task", 1, 1.0),
        ("demo.task", 2, 2.0),
        ("demo.task", 3, 4.0),
        ("demo.task", 4, 4.0),
    ]
    assert retried[0]["error"] == "db away"
    assert retried[1]["error_type"] == "RedisUnavailable"
    (recovered,) = log_lines("service.task_recovered")
    assert (recovered["task"], recovered["attempts"]) == ("demo.task", 4)


async def test_call_lets_a_bug_through(autojump_clock: trio.testing.MockClock) -> None:
    async def step() -> None:
        raise KeyError("a bug, not an outage")

    with pytest.raises(KeyError):
        await Retrying("demo.task").call(step)


async def _flaky_serve(
    plan: list[BaseException | None],
    starts: list[float],
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Reports started, then fails as `plan` says (None: returns); one entry per start."""
    starts.append(trio.current_time())
    task_status.started(f"start {len(starts)}")
    await trio.sleep(1)
    error = plan.pop(0)
    if error is None:
        return None
    raise error


async def test_keep_serving_restarts_a_task_an_outage_ended(
    autojump_clock: trio.testing.MockClock, log_lines: Any
) -> None:
    starts: list[float] = []
    group = ExceptionGroup("nursery", [Unavailable("lost"), RedisUnavailable("lost too")])
    plan: list[BaseException | None] = [Unavailable("db away"), group, None]
    async with trio.open_nursery() as nursery:
        value = await nursery.start(keep_serving, "demo.task", partial(_flaky_serve, plan), starts)
    assert value == "start 1"  # only the first start is reported
    assert len(starts) == 3
    restarts = log_lines("service.task_retrying")
    assert [(r["task"], r["attempt"], r["restarting"]) for r in restarts] == [
        ("demo.task", 1, True),
        ("demo.task", 2, True),
    ]
    assert starts[1] - starts[0] <= 1 + 0.5  # first restart within the first backoff
    assert log_lines("service.task_failed") == []


async def test_keep_serving_names_a_task_that_ends_the_process(
    autojump_clock: trio.testing.MockClock, log_lines: Any
) -> None:
    starts: list[float] = []
    plan: list[BaseException | None] = [ZeroDivisionError("a bug")]
    with pytest.raises(ExceptionGroup) as raised:
        async with trio.open_nursery() as nursery:
            await nursery.start(keep_serving, "demo.task", partial(_flaky_serve, plan), starts)
    assert raised.group_contains(ZeroDivisionError)
    (failed,) = log_lines("service.task_failed")
    assert failed["task"] == "demo.task"
    assert failed["level"] == "error"
    assert "ZeroDivisionError: a bug" in failed["exception"]
    assert "_flaky_serve" in failed["exception"]  # the traceback, not just the message


async def test_keep_serving_lets_an_outage_before_the_first_start_fail_start_up(
    autojump_clock: trio.testing.MockClock, log_lines: Any
) -> None:
    async def unreachable(*, task_status: trio.TaskStatus[None]) -> None:
        raise Unavailable("PostgreSQL: Connect call failed")

    with pytest.raises(ExceptionGroup) as raised:
        async with trio.open_nursery() as nursery:
            await nursery.start(keep_serving, "demo.task", unreachable)
    assert raised.group_contains(Unavailable)
    (failed,) = log_lines("service.task_failed")
    assert failed["task"] == "demo.task"
    assert "Connect call failed" in failed["exception"]


async def test_a_task_with_its_own_schedule_keeps_it(
    autojump_clock: trio.testing.MockClock, log_lines: Any
) -> None:
    heartbeat = Retrying("demo.heartbeat", backoff=Backoff(0.5, 60, rng=lambda: 1.0))
    assert [heartbeat.failed(OSError("x"), at_least_s=10, at_most_s=10) for _ in range(3)] == [
        10,
        10,
        10,
    ]
    reaper = Retrying("demo.reaper", backoff=Backoff(4, 60, rng=lambda: 1.0))
    assert [reaper.failed(OSError("x"), at_most_s=15) for _ in range(3)] == [4, 8, 15]
    assert [x["retry_in_s"] for x in log_lines("service.task_retrying")][-3:] == [4, 8, 15]
