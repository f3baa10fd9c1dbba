"""Health checks (SPEC §13.2): liveness, cached readiness, the detailed report.

Readiness asks the database and (when configured) Redis, each bounded by
`health.check_timeout_s`, and reuses the answer for `health.readiness_cache_s`, so probes
cannot overload the database; concurrent probes share one check in flight. During shutdown
it answers `draining` at once without touching anything. Public answers never carry error
details (they are logged instead).
"""

from __future__ import annotations

import os
import resource
import shutil
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from lumiku import __version__
from lumiku.errors import DatabaseError, RedisUnavailable
from lumiku.observability.logging import get_logger
from lumiku.redis import ping as redis_ping

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from lumiku.config import Settings
    from lumiku.db.store import Store
    from lumiku.redis import Client
    from lumiku.shutdown import ShutdownState

log = get_logger(__name__)

OK: Final = "ok"
ERROR: Final = "error"


@attrs.frozen
class Check:
    status: str
    latency_ms: float | None = None
    error: str | None = None
    extra: dict[str, Any] = attrs.field(factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.latency_ms is not None:
            out["latency_ms"] = self.latency_ms
        if self.error is not None:
            out["error"] = self.error
        out.update(self.extra)
        return out


async def timed_check(name: str, probe: Callable[[], Awaitable[None]], timeout_s: float) -> Check:
    """Run `probe` within `timeout_s`; a failure becomes an `error` Check, logged with detail."""
    start = time.perf_counter()
    try:
        with trio.fail_after(timeout_s):
            await probe()
    except trio.TooSlowError:
        log.warning("health.check_failed", check=name, error="timeout")
        return Check(ERROR, error="timeout")
    except (DatabaseError, RedisUnavailable, OSError) as exc:
        log.warning("health.check_failed", check=name, error=str(exc))
        return Check(ERROR, error="unavailable")
    return Check(OK, latency_ms=round((time.perf_counter() - start) * 1000, 2))


def storage_check(path: str, min_free_bytes: int) -> Check:
    """Is `path` writable (a file is created and removed) with at least `min_free_bytes` free?

    Blocking: call it through `trio.to_thread.run_sync`.
    """
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, f".probe-{uuid.uuid4().hex}")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.unlink(probe)
        free = shutil.disk_usage(path).free
    except OSError as exc:
        log.warning("health.check_failed", check="storage", error=str(exc))
        return Check(ERROR, error="not writable")
    extra = {"free_bytes": free, "min_free_bytes": min_free_bytes}
    if free < min_free_bytes:
        return Check(ERROR, error="low free space", extra=extra)
    return Check(OK, extra=extra)


def rss_bytes() -> int:
    """Resident set size of this process (peak RSS where /proc is missing)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@attrs.define
class Health:
    """The service's health answers; one per process, held by `Deps`."""

    settings: Settings
    store: Store
    redis: Client | None
    shutdown: ShutdownState
    details: Callable[[], Awaitable[dict[str, Any]]] | None = None  # queue, workers, ...
    started_at: float = attrs.field(factory=time.monotonic)
    _cached_at: float = float("-inf")
    _cached: tuple[int, dict[str, Any]] | None = None
    _lock: trio.Lock = attrs.field(factory=trio.Lock)

    def uptime_s(self) -> float:
        return round(time.monotonic() - self.started_at, 3)

    def summary(self) -> dict[str, Any]:
        """`GET /health`: touches nothing."""
        return {
            "status": "ok",
            "service": "lumiku",
            "version": __version__,
            "environment": self.settings.environment,
            "uptime_s": self.uptime_s(),
        }

    async def readiness(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for `GET /health/readiness`."""
        if self.shutdown.draining:
            return 503, {"status": "draining"}
        async with self._lock:
            ttl = self.settings.health.readiness_cache_s
            if self._cached is not None and trio.current_time() - self._cached_at < ttl:
                return self._cached
            checks = await self._dependency_checks()
            ready = all(c.status == OK for c in checks.values())
            body = {
                "status": "ready" if ready else "not_ready",
                "checks": {k: c.as_dict() for k, c in checks.items()},
            }
            self._cached, self._cached_at = (200 if ready else 503, body), trio.current_time()
            return self._cached

    async def _dependency_checks(self) -> dict[str, Check]:
        timeout_s = self.settings.health.check_timeout_s
        results: dict[str, Check] = {}

        async def run(name: str, probe: Callable[[], Awaitable[None]]) -> None:
            results[name] = await timed_check(name, probe, timeout_s)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "database", self.store.ping)
            if self.redis is not None:
                redis = self.redis
                nursery.start_soon(run, "redis", lambda: redis_ping(redis, timeout_s))
        return {name: results[name] for name in sorted(results)}

    async def detailed(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) for `GET /health/detailed`: healthy, degraded or unhealthy."""
        checks = await self._dependency_checks()
        checks["storage"] = await trio.to_thread.run_sync(
            storage_check, self.settings.storage.path, self.settings.storage.min_free_bytes
        )
        if checks["database"].status == OK:
            status = await self.store.schema_status()
            checks["database"] = attrs.evolve(
                checks["database"],
                extra={
                    "backend": self.store.backend,
                    "schema_version": status.version,
                    "schema_current": status.is_current,
                },
            )
        extra: dict[str, Any] = {}
        if self.details is not None and checks["database"].status == OK:
            try:
                with trio.fail_after(self.settings.health.check_timeout_s * 4):
                    extra = await self.details()
            except (DatabaseError, trio.TooSlowError) as exc:
                log.warning("health.details_failed", error=str(exc) or "timeout")
        if checks["database"].status != OK:
            overall, code = "unhealthy", 503
        elif (
            self.shutdown.draining
            or any(c.status != OK for c in checks.values())
            or extra.get("providers", {}).get("status") == "degraded"  # a breaker is open
        ):
            overall, code = "degraded", 200
        else:
            overall, code = "healthy", 200
        return code, {
            "status": overall,
            "draining": self.shutdown.draining,
            "checks": {k: c.as_dict() for k, c in checks.items()},
            **extra,
            "memory": {"rss_bytes": rss_bytes()},
            "uptime_s": self.uptime_s(),
            "version": __version__,
        }
