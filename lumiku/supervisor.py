"""`run(settings)`: the root nursery that owns every task of the process (SPEC §1, DESIGN).

```
run
 ├─ watch_signals                      first, so a signal during start-up is honoured
 ├─ AsyncExitStack (closed shielded, at most CLOSE_BUDGET_S):
 │    trio-asyncio loop (PostgreSQL only) → Store (+ migrations) → Redis → storage →
 │    image providers → Duitku client (payments enabled only)
 └─ services nursery
      ├─ systemd.serve_watchdog        WATCHDOG=1 while loops progress, EXTEND_TIMEOUT_USEC
      ├─ credits.serve_reconciler      the daily ledger audit, logged
      ├─ payments.serve_payment_expiry pending payments past their deadline → expired
      ├─ flags.serve_flags             runtime flag overrides from Redis (change + every 1 s)
      ├─ events.serve_fanout           ONE Redis subscription → this instance's subscribers
      ├─ jobs.serve_workers            claim, run, retry, release on shutdown (a watchdog beacon)
      ├─ jobs.serve_reaper             expired leases back to the queue or failed (STALLED)
      ├─ jobs.serve_signals            LISTEN: other instances' wake-ups and cancellations
      └─ http nursery: serve_http      returns once drained; then the rest is cancelled
                       (+ serve_http of /metrics alone on metrics.bind, when set)
```

Each background task runs under `keep_serving`: it rides out outages of the database and
Redis itself (`lumiku.retrying`), and should one still escape it after start-up it is
started again; anything else that ends it is logged with the task's name and traceback.

Exit codes: 0 after a graceful stop, 1 when a second signal forced it or something
failed, 4 when the schema is behind (production without `database.auto_migrate`) or ahead.
"""

from __future__ import annotations

import contextlib
import gc
import uuid
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio
import trio_asyncio

from lumiku import __version__, events, exit_codes
from lumiku.accounts.passwords import Hasher
from lumiku.apps.registry import Registry
from lumiku.config import redact_url
from lumiku.counters import make_counters
from lumiku.credits.reconcile import LEDGER_CHECKS, serve_reconciler
from lumiku.db.store import Store, open_store
from lumiku.deps import Deps
from lumiku.errors import (
    ConfigError,
    ConfigProblem,
    DatabaseError,
    LumikuError,
    RedisUnavailable,
    SchemaMismatch,
    StorageError,
    sole_exception,
    unwrapping_sole_exception,
)
from lumiku.flags import Flags, serve_flags
from lumiku.http.app import create_app
from lumiku.http.metrics import listener_app as metrics_listener_app
from lumiku.http.ratelimit import RateLimiter
from lumiku.http.server import serve_http
from lumiku.jobs.queue import queue_statistics
from lumiku.jobs.reaper import serve_reaper
from lumiku.jobs.reconcile_checks import JOB_CHECKS
from lumiku.jobs.signals import serve_signals
from lumiku.jobs.worker import JobControl, serve_workers
from lumiku.observability.health import Health
from lumiku.observability.logging import get_logger
from lumiku.observability.metrics import Metrics
from lumiku.payments.checks import PAYMENT_CHECKS
from lumiku.payments.duitku import open_duitku
from lumiku.payments.expiry import serve_payment_expiry
from lumiku.providers.registry import open_providers
from lumiku.redis import open_redis
from lumiku.retrying import DEPENDENCY_ERRORS, Backoff, Retrying, TaskTroubles
from lumiku.shutdown import ShutdownState, watch_signals
from lumiku.storage import open_storage
from lumiku.systemd import Beacon, Notifier, listen_fd_binds, serve_watchdog, watchdog_interval_s

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

    from quart import Blueprint

    from lumiku.config import Settings

log = get_logger(__name__)

GC_THRESHOLDS: Final = (50_000, 20, 10)

CLOSE_BUDGET_S: Final = 5.0
EXIT_OK: Final = exit_codes.OK
EXIT_FAILED: Final = exit_codes.FAILED
EXIT_SCHEMA: Final = exit_codes.SCHEMA
EXIT_CONFIG: Final = exit_codes.CONFIG
# A background task that an outage ended after it started is started again within this.
RESTART_BACKOFF_MAX_S: Final = 30.0


@contextlib.asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Store]:
    """Open the Store, with the trio-asyncio loop asyncpg needs when the URL is PostgreSQL.

    The loop is a nursery and wraps whatever leaves it in an ExceptionGroup; a lone error
    is handed back unwrapped so callers can catch `Unavailable` and friends.
    """
    with unwrapping_sole_exception():
        async with contextlib.AsyncExitStack() as stack:
            if settings.database.url.startswith(("postgresql:", "postgres:")):
                await stack.enter_async_context(trio_asyncio.open_loop())
            yield await stack.enter_async_context(open_store(settings))


async def prepare_schema(store: Store, settings: Settings) -> None:
    """Apply pending migrations when allowed; raise SchemaMismatch when we may not run."""
    status = await store.schema_status()
    if status.unknown:
        raise SchemaMismatch(
            f"the database has migrations this build does not know: {', '.join(status.unknown)}"
        )
    if not status.pending:
        return
    if settings.is_production and not settings.database.auto_migrate:
        raise SchemaMismatch(
            f"{len(status.pending)} pending migration(s) ({', '.join(status.pending)}); "
            "run `lumiku migrate` or set database.auto_migrate = true"
        )
    applied = await store.migrate()
    log.info("db.migrated", applied=list(applied))


async def run(
    settings: Settings,
    *,
    blueprints: Iterable[Blueprint] = (),
    state: ShutdownState | None = None,
    apps: Registry | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> int:
    """Run the service until SIGTERM/SIGINT (or `state.request`); return the exit code.

    `task_status` receives the bound addresses once the service is ready (tests, benches);
    `apps` is the registry of apps to serve: the built-in apps unless given (tests register
    their own).
    Cleans up everything it opened, even when forced: resources close in a shielded scope
    bounded by CLOSE_BUDGET_S. Logs `service.ready` once serving and `service.stopped` last.
    """
    state = state or ShutdownState()
    notifier = Notifier(settings.systemd.notify_socket)
    state.on_request(notifier.stopping_now)
    code = EXIT_OK
    async with trio.open_nursery() as root:
        state.on_force(root.cancel_scope.cancel)
        await root.start(watch_signals, state)
        log.info(
            "service.starting",
            version=__version__,
            environment=settings.environment,
            database=redact_url(settings.database.url),
        )
        try:
            if apps is None:
                from lumiku.apps.builtin import builtin_apps

                apps = builtin_apps()
            code = await _run_service(settings, state, notifier, blueprints, apps, task_status)
        except Exception:  # a bug: into the JSON log with its trace, not onto stderr
            log.exception("service.crashed")
            code = EXIT_FAILED
        finally:
            root.cancel_scope.cancel()
    if state.forced:
        code = EXIT_FAILED
    log.info("service.stopped", exit_code=code)
    return code


async def _run_service(
    settings: Settings,
    state: ShutdownState,
    notifier: Notifier,
    blueprints: Iterable[Blueprint],
    apps: Registry | None,
    task_status: trio.TaskStatus[list[str]],
) -> int:
    # Resources such as coredis's pool are nurseries: they must be exited under the same
    # cancel scopes they were entered in. So both scopes wrap the whole resource lifetime:
    # `startup` is cancelled by a signal that arrives before the service is ready, and
    # `closing` is switched to shielded (with a deadline) just before the resources close.
    phase = {"starting": True}
    with trio.CancelScope() as startup:
        state.on_request(lambda: startup.cancel() if phase["starting"] else None)
        with trio.CancelScope() as closing:
            try:
                async with contextlib.AsyncExitStack() as stack:
                    try:
                        deps = await stack.enter_async_context(
                            open_deps(settings, state, apps=apps)
                        )
                        phase["starting"] = False
                        await _serve(deps, notifier, blueprints, task_status)
                    finally:
                        closing.shield = True
                        closing.deadline = trio.current_time() + CLOSE_BUDGET_S
            except (LumikuError, OSError, BaseExceptionGroup) as raw:
                code = _failure_code(sole_exception(raw))
                if code is None:
                    raise
                return code
        if closing.cancelled_caught:
            log.warning("service.close_timed_out", budget_s=CLOSE_BUDGET_S)
    if startup.cancelled_caught:
        log.info("service.startup_interrupted")
    return EXIT_OK


def _failure_code(error: BaseException) -> int | None:
    """The exit code for a failure that ends the service, logged with its traceback (call
    it while handling the error); None for unexpected ones."""
    if isinstance(error, ConfigError):
        log.error("service.config_invalid", problems=[str(p) for p in error.problems])
        return EXIT_CONFIG
    if isinstance(error, SchemaMismatch):
        log.error("service.schema_mismatch", error=str(error))
        return EXIT_SCHEMA
    if isinstance(error, DatabaseError | RedisUnavailable | StorageError):
        log.exception("service.dependency_unavailable", error=str(error))
        return EXIT_FAILED
    if isinstance(error, OSError):
        log.exception("service.start_failed", error=str(error))
        return EXIT_FAILED
    return None


@attrs.define
class _FirstStart:
    """The `task_status` a restarted task gets: only its first start is reported."""

    status: trio.TaskStatus[Any]
    done: bool = False

    def started(self, value: Any = None) -> None:
        if not self.done:
            self.done = True
            self.status.started(value)


def _outage_only(error: BaseException) -> bool:
    """Whether `error` (or every leaf of its exception group) is a dependency's outage."""
    if isinstance(error, BaseExceptionGroup):
        return all(_outage_only(leaf) for leaf in error.exceptions)
    return isinstance(error, DEPENDENCY_ERRORS)


async def keep_serving(
    task: str,
    serve: Callable[..., Awaitable[object]],
    *args: Any,
    task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run `serve(*args, task_status=…)`, a background task of the service, until it
    returns or is cancelled, and start it again should an outage of a dependency ever
    escape it after it started (SPEC §1: only start-up may fail on an unreachable
    dependency; each loop already handles its own, so this is the last line). A restart is
    logged (`service.task_retrying` with `restarting=true`) after a jittered backoff; its
    start is not reported again. Anything else that escapes, or an outage before the first
    start, is logged as `service.task_failed` with the task's name and the traceback, and
    ends the service."""
    retrying = Retrying(task, backoff=Backoff(max_s=RESTART_BACKOFF_MAX_S))
    status = _FirstStart(task_status)
    while True:
        began = trio.current_time()
        try:
            await serve(*args, task_status=status)
        except Exception as raw:  # observed to name the task in the log, then re-raised
            if not status.done or not _outage_only(raw):
                log.exception("service.task_failed", task=task)
                raise
            if trio.current_time() - began >= RESTART_BACKOFF_MAX_S:
                retrying.failures = 0  # it ran well for a while: start the count again
            await retrying.wait_after(sole_exception(raw), restarting=True)
        else:
            return


@attrs.define
class RateStatus:
    """The one-line `STATUS=` summary: where we serve, the request rate since last time and
    what `jobs()` says about the jobs."""

    requests_total: Callable[[], int]
    where: Callable[[], str]
    jobs: Callable[[], str] = lambda: ""
    _last_count: int = 0
    _last_at: float | None = None

    def __call__(self) -> str:
        now, count = trio.current_time(), self.requests_total()
        elapsed = now - self._last_at if self._last_at is not None else 0.0
        rate = (count - self._last_count) / elapsed if elapsed > 0 else 0.0
        self._last_count, self._last_at = count, now
        jobs = self.jobs()
        return f"serving on {self.where()}; {rate:.1f} req/s" + (f"; {jobs}" if jobs else "")


@contextlib.asynccontextmanager
async def open_deps(
    settings: Settings,
    state: ShutdownState | None = None,
    *,
    migrate: bool = True,
    apps: Registry | None = None,
) -> AsyncIterator[Deps]:
    """Open every resource in start order (database and migrations, Redis, storage, image
    providers) and yield the `Deps` over them; closes them in reverse. Operator commands pass
    `migrate=False` and get SchemaMismatch on a schema that is not current."""
    async with contextlib.AsyncExitStack() as stack:
        store = await stack.enter_async_context(open_database(settings))
        if migrate:
            await prepare_schema(store, settings)
        else:
            status = await store.schema_status()
            if not status.is_current:
                raise SchemaMismatch("the schema is not current; run `lumiku migrate` first")
        redis = await stack.enter_async_context(open_redis(settings.redis))
        storage = await stack.enter_async_context(open_storage(settings.storage))
        providers = await stack.enter_async_context(open_providers(settings))
        duitku = await stack.enter_async_context(open_duitku(settings))
        state = state or ShutdownState()
        counters = make_counters(redis, settings.redis.command_timeout_s)
        instance_id = uuid.uuid4().hex
        control = JobControl()
        troubles = TaskTroubles()
        apps = apps or Registry()

        async def details() -> dict[str, Any]:
            workers = control.workers.statistics() if control.workers else {"busy": 0, "total": 0}
            return {
                "queue": await queue_statistics(store, datetime.now(UTC)),
                "workers": workers,
                "jobs": control.metrics.snapshot(),
                "providers": providers.health(),
                "tasks": troubles.snapshot(),  # background tasks failing right now
            }

        app_rules = [rule for app in apps.apps() for rule in app.rate_limits]
        try:
            limiter = RateLimiter(settings.ratelimit, counters, app_rules)
        except ValueError as exc:
            # Settings naming an app's rule are checked against the apps only here.
            raise ConfigError([ConfigProblem("ratelimit", "settings", str(exc))]) from exc
        deps = Deps(
            settings=settings,
            store=store,
            redis=redis,
            shutdown=state,
            health=Health(settings, store, redis, state, details),
            hasher=Hasher.from_settings(settings.auth),
            counters=counters,
            limiter=limiter,
            apps=apps,
            kinds=apps.job_kinds,
            events=events.make_bus(redis, instance_id),
            instance_id=instance_id,
            jobs=control,
            storage=storage,
            providers=providers,
            metrics=Metrics(),
            duitku=duitku,
            flags=Flags.from_settings(settings.flags),
            troubles=troubles,
        )
        deps.metrics.watch(deps)
        yield deps


async def _serve(
    deps: Deps,
    notifier: Notifier,
    blueprints: Iterable[Blueprint],
    task_status: trio.TaskStatus[list[str]],
) -> None:
    settings = deps.settings
    grace_s = settings.shutdown.grace_s
    binds = listen_fd_binds(settings.systemd) or [settings.http.bind]
    worker_beacon = Beacon("worker_loop")
    beacons = [worker_beacon]
    app = create_app(deps, blueprints)
    addresses: list[str] = []
    status = RateStatus(lambda: app.requests_total, lambda: ", ".join(addresses), deps.jobs.status)
    troubles = deps.troubles
    async with trio.open_nursery() as services:
        # Each task outlives any outage of the database or Redis (`keep_serving`).
        await services.start(
            keep_serving,
            "systemd.watchdog",
            serve_watchdog,
            notifier,
            watchdog_interval_s(settings.systemd),
            beacons,
            deps.shutdown,
            grace_s,
            status,
        )
        await services.start(
            keep_serving,
            "credits.reconciler",
            partial(
                serve_reconciler,
                checks=(*LEDGER_CHECKS, *JOB_CHECKS, *PAYMENT_CHECKS),
                on_report=deps.metrics.reconciled,
                troubles=troubles,
            ),
            deps.store,
            settings.credits.reconcile_interval_s,
        )
        if deps.flags is not None:
            await services.start(
                keep_serving,
                "flags",
                partial(serve_flags, troubles=troubles),
                deps.flags,
                deps.redis,
                settings.flags.refresh_s,
            )
        await services.start(
            keep_serving,
            "payments.expiry",
            partial(serve_payment_expiry, troubles=troubles),
            deps.store,
            settings.payments.expiry_check_s,
        )
        await services.start(
            keep_serving,
            "events.fanout",
            partial(events.serve_fanout, troubles=troubles),
            deps.events,
        )
        await services.start(keep_serving, "jobs.workers", serve_workers, deps, worker_beacon)
        await services.start(keep_serving, "jobs.reaper", serve_reaper, deps)
        await services.start(keep_serving, "jobs.signals", serve_signals, deps)
        # Both listeners stay open for the readiness delay (http/server.py).
        serve = partial(serve_http, readiness_delay_s=settings.shutdown.readiness_delay_s)
        async with trio.open_nursery() as http:
            addresses += await http.start(serve, app, settings.http, binds, deps.shutdown, grace_s)
            metrics_addresses: list[str] = []
            if settings.metrics.bind:  # /metrics only there (SPEC §13.3)
                metrics_addresses = await http.start(
                    serve,
                    metrics_listener_app(deps),
                    # never shared: a scrape must reach the one instance it names
                    attrs.evolve(settings.http, reuse_port=False),
                    [settings.metrics.bind],
                    deps.shutdown,
                    grace_s,
                )
            notifier.ready(f"serving on {', '.join(addresses)}")
            log.info(
                "service.ready",
                addresses=addresses,
                metrics_addresses=metrics_addresses,
                database=deps.store.backend,
                redis="redis" if deps.redis is not None else "in-process",
                storage=deps.storage.name,
                environment=settings.environment,
                socket_activated=binds[0].startswith("fd://"),
            )
            task_status.started(addresses)
            # Everything still alive after starting (modules, settings, pools) lives as long
            # as the process: keep it out of the collector's full passes, which otherwise
            # stall the event loop longer as the heap grows (bench/event_latency: p99 at
            # 1000 clients from ~150-500 ms to ~35 ms).
            gc.collect()
            gc.freeze()
            # Young collections every 50 000 allocations instead of 700, so full ones, whose
            # pause grows with the heap (1000 websockets: ~350 000 objects, ~300 ms), run
            # about a hundred times less often (bench/event_latency: p99 ~130 ms → ~33 ms).
            gc.set_threshold(*GC_THRESHOLDS)
        # Step 4 of the shutdown: the workers drain alongside HTTP (grace, then release).
        with trio.move_on_after(grace_s + CLOSE_BUDGET_S):
            workers = deps.jobs.workers  # the latest start's, should a restart have been needed
            if workers is not None:
                await workers.drained.wait()
        services.cancel_scope.cancel()
