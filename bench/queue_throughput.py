"""Jobs/s from submission to `succeeded` for a zero-work job kind on PostgreSQL: Lumiku's
queue against procrastinate running an equivalent no-op task, in the same run.

What one side does, in a fresh process on a fresh scratch database (schema applied before
the clock starts, workers started and idle):
- `--submitters` tasks submit `--jobs` jobs between them, one job per call and transaction,
  in the same event loop as the workers (Lumiku: `jobs.service.submit_job` charging
  `--cost`, 0 by default, which queues, NOTIFYs, publishes `generation:queued` and wakes the
  workers; procrastinate:
  `task.defer_async`, one INSERT whose trigger NOTIFYs the worker);
- the workers run the jobs meanwhile with `--concurrency` slots (Lumiku: the kind's
  concurrency, with the reaper and the LISTEN loop running as in the service; procrastinate:
  `run_worker_async(concurrency=...)`, LISTEN/NOTIFY on); both pools hold at most `--pool`
  connections;
- the clock runs from the first submission until a poller (the same psycopg loop on both
  sides, every 5 ms) counts every job `succeeded`.
Lumiku's jobs belong to `--users` users, round-robin, with the default per-user running cap
(`jobs.per_user_running` = 2): with 100 users it never binds below 200 slots, but the
fairness bookkeeping of every claim is paid, as in production (`--users 1
--per-user-running 32` leaves it out). Procrastinate has no such notion. Lumiku's events go
to the in-process bus (no Redis) unless `--redis-url` is given. Both sides log nothing
below WARNING.

Each round runs both sides back to back (Lumiku first in odd rounds, procrastinate first in
even ones); the figure is the median over rounds of each round's ratio Lumiku / procrastinate.

Usage: .venv/bin/python bench/queue_throughput.py [--jobs 1000] [--rounds 5] [--py-spy PATH]
Needs PostgreSQL (LUMIKU_BENCH_POSTGRES_URL) and the `bench` extra.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import psycopg
from scratch_db import scratch_database

ROOT: Final = Path(__file__).resolve().parents[1]
SIDES: Final = ("lumiku", "procrastinate")
POLL_S: Final = 0.005
PASSWORD: Final = "Tr0ub4dor&3-horse"
SETTLE_S: Final = 0.5


def wait_succeeded(url: str, table: str, jobs: int, timeout_s: float = 600) -> None:
    """Block until `jobs` rows of `table` are `succeeded` (run in a thread)."""
    deadline = time.monotonic() + timeout_s
    query = f"SELECT count(*) FROM {table} WHERE status = 'succeeded'"
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(query).fetchone()
            if row is not None and row[0] >= jobs:
                return
            time.sleep(POLL_S)
    raise SystemExit(f"{table}: not every job succeeded within {timeout_s} s")


def shares(total: int, parts: int) -> list[int]:
    return [total // parts + (i < total % parts) for i in range(parts)]


# Lumiku ---------------------------------------------------------------------------------


async def run_lumiku(args: argparse.Namespace) -> dict[str, float]:
    import trio

    from lumiku import events
    from lumiku.accounts.service import create_user
    from lumiku.apps.registry import App, Registry
    from lumiku.config import load_settings
    from lumiku.jobs.kinds import JobContext, JobKind, Outcome
    from lumiku.jobs.reaper import serve_reaper
    from lumiku.jobs.service import submit_job
    from lumiku.jobs.signals import serve_signals
    from lumiku.jobs.worker import serve_workers
    from lumiku.observability import logging as logs
    from lumiku.supervisor import open_deps
    from lumiku.systemd import Beacon

    async def noop(_ctx: JobContext) -> Outcome:
        return Outcome({})

    kind = JobKind("bench.noop", noop, concurrency=args.concurrency)
    registry = Registry([App("bench", "Bench", kinds=(kind,))])
    var_dir = tempfile.mkdtemp(prefix="lumiku-bench-")
    environ = {
        "LUMIKU_ENVIRONMENT": "test",
        "LUMIKU_VAR_DIR": var_dir,
        "LUMIKU_DATABASE_URL": args.database_url,
        "LUMIKU_DATABASE_POOL_MAX_SIZE": str(args.pool),
        "LUMIKU_REDIS_URL": args.redis_url,
        "LUMIKU_AUTH_ARGON2_TIME_COST": "1",
        "LUMIKU_AUTH_ARGON2_MEMORY_KIB": "1024",
        "LUMIKU_AUTH_ARGON2_PARALLELISM": "1",
    }
    if args.per_user_running:
        environ["LUMIKU_JOBS_PER_USER_RUNNING"] = str(args.per_user_running)
    settings = load_settings(environ=environ, default_path=os.path.join(var_dir, "absent.toml"))
    logs.configure("warning", "json", settings.secret_values(), stream=open(os.devnull, "w"))  # noqa: SIM115

    async with open_deps(settings, apps=registry) as deps, trio.open_nursery() as nursery:
        users = [
            await create_user(
                deps,
                email=f"bench{i}@example.com",
                password=PASSWORD,
                credits=args.cost * args.jobs,
            )
            for i in range(args.users)
        ]
        # The job side of the service as the supervisor runs it (no HTTP, no daily audit).
        await nursery.start(events.serve_fanout, deps.events)
        workers = await nursery.start(serve_workers, deps, Beacon("bench"))
        await nursery.start(serve_reaper, deps)
        await nursery.start(serve_signals, deps)
        await trio.sleep(SETTLE_S)

        async def submit_some(first: int, count: int) -> None:
            for i in range(first, first + count):
                user = users[i % len(users)]
                await submit_job(
                    deps, user, app="bench", kind=kind.name, payload={}, cost=args.cost
                )

        start, cpu = time.perf_counter(), time.process_time()
        async with trio.open_nursery() as submitters:
            first = 0
            for count in shares(args.jobs, args.submitters):
                submitters.start_soon(submit_some, first, count)
                first += count
        submitted = time.perf_counter()
        await trio.to_thread.run_sync(wait_succeeded, args.database_url, "jobs", args.jobs)
        done, cpu = time.perf_counter(), time.process_time() - cpu
        deps.shutdown.request("bench finished")
        with trio.fail_after(30):
            await workers.drained.wait()
        nursery.cancel_scope.cancel()
    return {"submit_s": submitted - start, "total_s": done - start, "cpu_s": cpu}


# procrastinate --------------------------------------------------------------------------


async def run_procrastinate(args: argparse.Namespace) -> dict[str, float]:
    import asyncio
    import contextlib

    import procrastinate

    connector = procrastinate.PsycopgConnector(
        conninfo=args.database_url, min_size=1, max_size=args.pool
    )
    app = procrastinate.App(connector=connector)

    @app.task(name="bench_noop")
    async def noop() -> None:
        return None

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=args.concurrency, install_signal_handlers=False)
        )
        await asyncio.sleep(SETTLE_S)

        async def submit_some(count: int) -> None:
            for _ in range(count):
                await noop.defer_async()

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(submit_some(n) for n in shares(args.jobs, args.submitters)))
        submitted = time.perf_counter()
        await asyncio.to_thread(wait_succeeded, args.database_url, "procrastinate_jobs", args.jobs)
        done, cpu = time.perf_counter(), time.process_time() - cpu
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await worker
    return {"submit_s": submitted - start, "total_s": done - start, "cpu_s": cpu}


def run_side(args: argparse.Namespace) -> None:
    if args.side == "lumiku":
        import trio

        result = trio.run(run_lumiku, args)
    else:
        import asyncio

        result = asyncio.run(run_procrastinate(args))
    print(json.dumps(result), flush=True)


# The orchestrator -----------------------------------------------------------------------


def side_command(side: str, url: str, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        str(Path(__file__).resolve()),
        "--side",
        side,
        "--database-url",
        url,
        "--jobs",
        str(args.jobs),
        "--concurrency",
        str(args.concurrency),
        "--submitters",
        str(args.submitters),
        "--pool",
        str(args.pool),
        "--users",
        str(args.users),
        "--per-user-running",
        str(args.per_user_running),
        "--redis-url",
        args.redis_url,
        "--cost",
        str(args.cost),
    ]


def measure(side: str, args: argparse.Namespace, wrap: list[str] | None = None) -> dict[str, Any]:
    parameters = {"synchronous_commit": args.synchronous_commit}
    with scratch_database(f"bench_{side}", parameters) as url:
        out = subprocess.run(
            [*(wrap or []), *side_command(side, url, args)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    if out.returncode != 0:
        raise SystemExit(f"{side} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    # The last JSON line: py-spy, when it wraps the side, writes its own lines too.
    line = [text for text in out.stdout.splitlines() if text.startswith("{")][-1]
    result: dict[str, Any] = json.loads(line)
    result["jobs_per_s"] = args.jobs / result["total_s"]
    result["submits_per_s"] = args.jobs / result["submit_s"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--submitters", type=int, default=4)
    parser.add_argument("--pool", type=int, default=10)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--per-user-running", type=int, default=0, help="0: Lumiku's default (2)")
    parser.add_argument("--redis-url", default="", help="Lumiku's event bus on Redis")
    parser.add_argument(
        "--cost",
        type=int,
        default=0,
        help="credits each Lumiku job is charged (0: no ledger entry; procrastinate has none)",
    )
    parser.add_argument(
        "--synchronous-commit",
        choices=("on", "off"),
        default="on",
        help="the scratch databases' synchronous_commit (off: commits do not wait for fsync)",
    )
    parser.add_argument(
        "--py-spy", metavar="PATH", help="also profile one Lumiku run into PATH (raw format)"
    )
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        run_side(args)
        return
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    ratios: list[float] = []
    rates: dict[str, list[float]] = {side: [] for side in SIDES}
    for round_no in range(1, args.rounds + 1):
        order = SIDES if round_no % 2 else SIDES[::-1]
        results = {side: measure(side, args) for side in order}
        for side in SIDES:
            rates[side].append(results[side]["jobs_per_s"])
        ratio = results["lumiku"]["jobs_per_s"] / results["procrastinate"]["jobs_per_s"]
        ratios.append(ratio)
        print(
            f"round {round_no}: "
            + ", ".join(
                f"{side} {results[side]['jobs_per_s']:.0f} jobs/s "
                f"(submitted at {results[side]['submits_per_s']:.0f}/s, "
                f"process CPU {100 * results[side]['cpu_s'] / results[side]['total_s']:.0f} %)"
                for side in order
            )
            + f", ratio {ratio:.3f}",
            flush=True,
        )
    for side in SIDES:
        print(
            f"{side}: median {statistics.median(rates[side]):.0f} jobs/s "
            f"(min {min(rates[side]):.0f}, max {max(rates[side]):.0f})"
        )
    print(
        f"median ratio lumiku / procrastinate = {statistics.median(ratios):.3f} "
        f"(min {min(ratios):.3f}, max {max(ratios):.3f}, {len(ratios)} rounds); target >= 1.5"
    )
    if args.py_spy:
        wrap = ["py-spy", "record", "--format", "raw", "--rate", "250", "-o", args.py_spy, "--"]
        wrap[0] = str(Path(sys.executable).with_name("py-spy"))
        profiled = measure("lumiku", args, wrap)
        print(f"profiled lumiku run: {profiled['jobs_per_s']:.0f} jobs/s; stacks in {args.py_spy}")


if __name__ == "__main__":
    main()
