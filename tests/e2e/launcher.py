"""Run the real service as its own process, with the test routes and a test app mounted.

Used by the process-level tests: `python -m tests.e2e.launcher` behaves like
`lumiku serve` (same config loading, logging, signals and exit codes) plus /api/_test/*
and the `demo` app, whose job kinds are queued through `POST /api/_test/jobs`:

- `demo.sleep` `{"ms": int, "steps": int}`: sleeps `ms` in `steps` equal parts, reporting
  progress after each, and succeeds with `{"slept_ms", "attempt"}`.
- `demo.hang` `{"release_file": path}`: waits until that file exists (forever without
  one), then succeeds with `{"attempt"}`; so a test decides when the job may finish.
"""

from __future__ import annotations

import sys
from typing import Final

import trio

from lumiku import config, supervisor
from lumiku.apps.registry import App, Registry
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from lumiku.observability import logging as logs
from lumiku.testing import routes_for_tests

SLEEP_CONCURRENCY: Final = 8
HANG_CONCURRENCY: Final = 2
HANG_CHECK_S: Final = 0.05

log = logs.get_logger(__name__)


async def sleep_job(ctx: JobContext) -> Outcome:
    ms, steps = int(ctx.payload["ms"]), max(int(ctx.payload.get("steps", 1)), 1)
    for step in range(1, steps + 1):
        await trio.sleep(ms / steps / 1000)
        await ctx.progress(step, steps, "sleeping")
    return Outcome({"slept_ms": ms, "attempt": ctx.attempt})


async def hang_job(ctx: JobContext) -> Outcome:
    release_file = ctx.payload.get("release_file")
    log.info("demo.hang_started", job_id=ctx.job_id, attempt=ctx.attempt)
    if release_file is None:
        await trio.sleep_forever()
    while not await trio.Path(str(release_file)).exists():
        await trio.sleep(HANG_CHECK_S)
    return Outcome({"attempt": ctx.attempt})


def demo_app() -> Registry:
    """The `demo` app with the kinds above (see the module docstring)."""
    return Registry(
        [
            App(
                "demo",
                "Demo",
                kinds=(
                    JobKind("demo.sleep", sleep_job, concurrency=SLEEP_CONCURRENCY, timeout_s=60),
                    JobKind("demo.hang", hang_job, concurrency=HANG_CONCURRENCY, timeout_s=600),
                ),
            )
        ]
    )


def main() -> int:
    try:
        settings = config.load_settings()
    except config.ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    logs.configure(settings.log.level, "json", settings.secret_values())
    return trio.run(
        lambda: supervisor.run(settings, blueprints=[routes_for_tests()], apps=demo_app())
    )


if __name__ == "__main__":
    sys.exit(main())
