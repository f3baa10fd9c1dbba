"""Issue 13's outage acceptance: the real service on PostgreSQL + Redis, each reached
through a TCP proxy of the suite's own, under a steady stream of Avatar Creator
generations with readiness polled every 100 ms, while a dependency is cut by resetting
its connections or by silently dropping its packets.

For every scenario: the process never exits; no request answers 5xx other than a clean 503
problem; every request answers within 10 s; readiness turns 503 within 2 s of a cut and 200
within 2 s of the restore; every accepted generation finishes; `lumiku reconcile` exits 0.
"""

from __future__ import annotations

import signal
import sys
from collections import Counter
from pathlib import Path

import pytest
import trio

from tests.e2e.chaos import lines_about
from tests.e2e.outages import (
    REQUEST_TIMEOUT_S,
    Mode,
    Record,
    Target,
    open_proxies,
    open_scenario,
    outage_env,
    trouble,
    wait_for_generations,
)
from tests.e2e.process import ROOT

pytestmark = pytest.mark.slow

READINESS_BOUND_S = 2.0
SHORT_CUT_S = 5.0
SHORT_CUTS = 5
LONG_CUT_S = 60.0
FINISH_WITHIN_S = 60.0


def check_record(record: Record, targets: tuple[Target, ...]) -> None:
    codes = Counter((a.status, a.code) for a in record.answers)
    why = f"answers by (status, code): {dict(codes)}; cuts: {record.cuts}"
    assert record.answers, why
    assert record.generations, why
    assert record.server_errors() == [], why
    assert record.unanswered() == [], why
    assert max(a.took_s for a in record.answers) <= REQUEST_TIMEOUT_S, why
    # every 503 during an outage is a problem naming the dependency
    assert {code for status, code in codes if status == 503} <= {
        "DATABASE_UNAVAILABLE",
        "RATE_LIMITER_UNAVAILABLE",
        "SERVICE_UNAVAILABLE",
    }, why
    for target, mode, started, restored in record.cuts:
        if target not in targets:
            continue
        down_at = record.first_readiness(started, 503, until=restored)
        assert down_at is not None, f"readiness never 503 during the {mode} cut of {target}"
        assert down_at - started <= READINESS_BOUND_S, (target, mode, down_at - started)
        up_at = record.first_readiness(restored, 200, until=float("inf"))
        assert up_at is not None, f"readiness never 200 after the {mode} cut of {target}"
        assert up_at - restored <= READINESS_BOUND_S, (target, mode, up_at - restored)


async def run_outages(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    targets_per_cut: list[tuple[Target, ...]],
    mode: Mode,
    seconds: float,
) -> None:
    async with open_proxies(postgres_url, redis_url) as (proxies, pg_url, rd_url):
        env = outage_env(tmp_path, pg_url, rd_url)
        with trio.fail_after(60 + len(targets_per_cut) * (seconds + 20) + FINISH_WITHIN_S):
            async with open_scenario(env, proxies) as scenario:
                process = scenario.service.current.process
                for targets in targets_per_cut:
                    await scenario.outage(targets, mode, seconds)
                    assert process.returncode is None, trouble(scenario.service)
                await scenario.end_load()
                record = scenario.record
                statuses = await wait_for_generations(
                    scenario.base_url, record.generations, FINISH_WITHIN_S
                )
                assert process.returncode is None, trouble(scenario.service)
                stuck_lines = [
                    line
                    for g in statuses
                    if statuses[g]["status"] != "succeeded"
                    for line in lines_about(scenario.service.instances, str(statuses[g]["job_id"]))
                ]
                assert await scenario.service.stop(signal.SIGTERM) == 0
        # through the proxies, which are up again
        reconciled = await trio.run_process(
            [sys.executable, "-m", "lumiku", "reconcile"],
            env=env,
            cwd=ROOT,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    unfinished = {g: s for g, s in statuses.items() if s["status"] != "succeeded"}
    assert len(statuses) == len(record.generations), "some generations were never seen"
    assert unfinished == {}, (unfinished, stuck_lines)
    check_record(record, tuple({t for targets in targets_per_cut for t in targets}))
    assert reconciled.returncode == 0, (reconciled.stdout, reconciled.stderr)


@pytest.mark.parametrize("mode", ["reset", "drop"])
@pytest.mark.parametrize("target", ["postgres", "redis"])
async def test_short_cuts_under_load(
    tmp_path: Path, postgres_url: str, redis_url: str, target: Target, mode: Mode
) -> None:
    await run_outages(
        tmp_path, postgres_url, redis_url, [(target,)] * SHORT_CUTS, mode, SHORT_CUT_S
    )


@pytest.mark.parametrize("mode", ["reset", "drop"])
async def test_a_long_cut_of_both_under_load(
    tmp_path: Path, postgres_url: str, redis_url: str, mode: Mode
) -> None:
    await run_outages(tmp_path, postgres_url, redis_url, [("postgres", "redis")], mode, LONG_CUT_S)
