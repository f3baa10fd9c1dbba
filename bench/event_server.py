"""The real service for bench/event_latency.py: `lumiku serve` (same configuration, logging,
signals and exit codes) with the test routes (`POST /api/_test/jobs` queues a job for the
caller) and one app whose kind `bench.progress` reports progress on a schedule.

The handler waits until `start_at` (epoch seconds: every job of a run starts together, once
all are queued) plus a random part of `interval_s` (so the jobs' events do not all fall on
the same instants), then calls `ctx.progress` `events` times, `interval_s` apart. Each stage
text is the wall-clock time (µs) just before that call, so a client can also measure from
the handler's call, the progress write included, not only from the event's `ts`.

Usage: event_server.py CONCURRENCY (everything else from LUMIKU_* as for `lumiku serve`)
"""

from __future__ import annotations

import random
import sys
import time
from functools import partial

import trio

from lumiku import config, supervisor
from lumiku.apps.registry import App, Registry
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from lumiku.observability import logging as logs
from lumiku.testing import routes_for_tests


async def report_progress(ctx: JobContext) -> Outcome:
    events = int(ctx.payload["events"])
    interval_s = float(ctx.payload["interval_s"])
    start_at = float(ctx.payload["start_at"])
    await trio.sleep(max(0.0, start_at - time.time()) + random.uniform(0, interval_s))
    for done in range(1, events + 1):
        await ctx.progress(done, events, f"{time.time():.6f}")
        if done < events:
            await trio.sleep(interval_s)
    return Outcome({"events": events})


def main() -> int:
    settings = config.load_settings()
    logs.configure(settings.log.level, "json", settings.secret_values())
    kind = JobKind("bench.progress", report_progress, concurrency=int(sys.argv[1]))
    registry = Registry([App("bench", "Bench", kinds=(kind,))])
    run = partial(supervisor.run, settings, blueprints=[routes_for_tests()], apps=registry)
    return trio.run(run)


if __name__ == "__main__":
    sys.exit(main())
