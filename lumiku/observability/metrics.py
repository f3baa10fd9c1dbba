"""This instance's Prometheus series (SPEC §13.3), in a registry of its own.

```
Metrics (one per service instance; never prometheus_client's global REGISTRY)
 ├─ HttpSeries          observed by EdgeMiddleware per request: duration by method, route
 │                      template and status; websockets open/opened
 ├─ JobTimings          a JobMetrics observer: queue wait and run time histograms by kind
 ├─ _ServiceCollector   read when scraped, from counters the components keep anyway:
 │                      jobs (JobMetrics), credits by app, event bus, rate limiter,
 │                      providers and breakers, DB pool, workers, the last ledger audit
 └─ ProcessCollector    process_resident_memory_bytes, process_cpu_seconds_total,
                        process_open_fds, … (prometheus_client's, read from /proc)
```

Only what needs a distribution is observed as it happens (one histogram observe per request
or job); everything else costs nothing until a scrape. Label values are bounded: routes are
templates (`/api/jobs/<job_id>`, never the raw path; anything unrouted is `unmatched`),
methods outside the usual ones are `OTHER`, kinds, apps and providers are the registered
ones. `render()` is the text exposition (format 0.0.4, `CONTENT_TYPE`).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from lumiku import __version__
from lumiku.providers.breaker import STATES

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from prometheus_client.metrics_core import Metric

    from lumiku.credits.reconcile import Report
    from lumiku.deps import Deps
    from lumiku.providers.breaker import Transition

CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4
UNMATCHED: Final = "unmatched"
METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HTTP_BUCKETS_S: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WAIT_BUCKETS_S: Final = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
RUN_BUCKETS_S: Final = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)


class HttpSeries:
    """Request durations by method, route template and status; websockets open and opened.

    `observe` caches the labelled child per (method, route, status), so a request costs a
    dictionary lookup and one histogram observe.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "lumiku_http_request_duration_seconds",
            "HTTP requests by method, route template and status (0: no response was sent), "
            "with their duration; _count is the number of requests.",
            ("method", "route", "status"),
            buckets=HTTP_BUCKETS_S,
            registry=registry,
        )
        self._children: dict[tuple[str, str, int], Any] = {}
        self.websockets_open = 0
        self.websockets_opened = 0

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None:
        """One finished HTTP request (`route` None when nothing routed it)."""
        key = (method if method in METHODS else "OTHER", route or UNMATCHED, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.duration.labels(key[0], key[1], str(status))
        child.observe(seconds)

    def websocket_opened(self) -> None:
        self.websockets_open += 1
        self.websockets_opened += 1

    def websocket_closed(self) -> None:
        self.websockets_open -= 1


class JobTimings:
    """A `JobObserver` (lumiku/jobs/metrics.py) feeding the queue wait and run time
    histograms; the job counters are read from `JobMetrics` when scraped instead."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.wait = Histogram(
            "lumiku_jobs_queue_wait_seconds",
            "Time from a job becoming due to a worker claiming it, by kind.",
            ("kind",),
            buckets=WAIT_BUCKETS_S,
            registry=registry,
        )
        self.run = Histogram(
            "lumiku_jobs_run_seconds",
            "Run time of a job's last attempt when it ended here, by kind.",
            ("kind",),
            buckets=RUN_BUCKETS_S,
            registry=registry,
        )

    def submitted(self, kind: str) -> None:
        pass

    def claimed(self, kind: str, wait_s: float) -> None:
        self.wait.labels(kind).observe(wait_s)

    def finished(self, kind: str, status: str, run_s: float | None) -> None:
        if run_s is not None:
            self.run.labels(kind).observe(run_s)

    def retried(self, kind: str, code: str) -> None:
        pass

    def stalled(self, kind: str) -> None:
        pass

    def released(self, kind: str) -> None:
        pass


class Metrics:
    """The registry of one service instance and its series; see the module docstring.

    Built before `Deps` (which holds it); `watch(deps)` then hooks it to the components.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.http = HttpSeries(self.registry)
        self.jobs = JobTimings(self.registry)
        self.breaker_transitions: Counter[tuple[str, str]] = Counter()  # (provider, new state)
        self.last_report: Report | None = None
        self.last_report_at: float | None = None  # Unix time of the last audit
        ProcessCollector(registry=self.registry)

    def watch(self, deps: Deps) -> None:
        """Observe `deps`' jobs and breakers, and read the rest of it when scraped."""
        deps.jobs.metrics.observe(self.jobs)
        deps.providers.on_breaker_change(self._breaker_changed)
        self.registry.register(_ServiceCollector(self, deps))

    def reconciled(self, report: Report) -> None:
        """Keep the latest ledger audit's findings (serve_reconciler's `on_report`)."""
        self.last_report, self.last_report_at = report, time.time()

    def render(self) -> bytes:
        """Every series in the Prometheus text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def _breaker_changed(self, transition: Transition) -> None:
        self.breaker_transitions[transition.breaker, transition.new] += 1


def _counter(
    name: str, documentation: str, labels: tuple[str, ...], values: Iterable[tuple[Any, float]]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, value in values:
        family.add_metric(key if isinstance(key, tuple) else (key,), value)
    return family


def _gauge(
    name: str, documentation: str, labels: tuple[str, ...], values: Iterable[tuple[Any, float]]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=labels)
    for key, value in values:
        family.add_metric(key if isinstance(key, tuple) else (key,), value)
    return family


class _ServiceCollector:
    """The series read at scrape time (see the module docstring). Runs on the event loop
    inside the scrape: plain reads of in-memory counters, no I/O."""

    def __init__(self, metrics: Metrics, deps: Deps) -> None:
        self._metrics = metrics
        self._deps = deps

    def describe(self) -> list[Metric]:
        return []  # nothing to check at registration; names are unique by construction

    def collect(self) -> Iterator[Metric]:
        yield _gauge(
            "lumiku_build_info", "Always 1; the version.", ("version",), [(__version__, 1)]
        )
        yield from self._http()
        yield from self._jobs()
        yield from self._credits()
        yield from self._payments()
        yield from self._events()
        yield from self._providers()
        yield from self._ratelimit()
        yield from self._reconcile()
        yield from self._db()

    def _http(self) -> Iterator[Metric]:
        http = self._metrics.http
        yield _gauge(
            "lumiku_websocket_connections", "Websockets open now.", (), [((), http.websockets_open)]
        )
        yield _counter(
            "lumiku_websocket_connections_opened",
            "Websocket connections opened.",
            (),
            [((), http.websockets_opened)],
        )

    def _jobs(self) -> Iterator[Metric]:
        jobs = self._deps.jobs
        totals = jobs.metrics
        yield _counter(
            "lumiku_jobs_submitted",
            "Jobs queued here, by kind.",
            ("kind",),
            totals.submitted_total.items(),
        )
        yield _counter(
            "lumiku_jobs_finished",
            "Jobs that ended here, by kind and outcome (succeeded, failed, cancelled).",
            ("kind", "outcome"),
            totals.finished_total.items(),
        )
        yield _counter(
            "lumiku_jobs_retries",
            "Failed attempts queued again, by kind and error code.",
            ("kind", "code"),
            totals.retries_total.items(),
        )
        yield _counter(
            "lumiku_jobs_stalls_recovered",
            "Jobs whose worker stopped answering, recovered by this instance's reaper.",
            ("kind",),
            totals.stalls_total.items(),
        )
        yield _counter(
            "lumiku_jobs_released",
            "Running jobs released back to the queue at shutdown, by kind.",
            ("kind",),
            totals.released_total.items(),
        )
        workers = jobs.workers.statistics() if jobs.workers is not None else {"busy": 0, "total": 0}
        yield _gauge(
            "lumiku_workers_busy", "Worker slots running a job.", (), [((), workers["busy"])]
        )
        yield _gauge("lumiku_workers", "Worker slots.", (), [((), workers["total"])])
        if jobs.queued is not None:
            yield _gauge(
                "lumiku_jobs_queued",
                "Jobs waiting in the queue (the reaper's last look).",
                (),
                [((), jobs.queued)],
            )

    def _credits(self) -> Iterator[Metric]:
        totals = self._deps.jobs.metrics
        yield _counter(
            "lumiku_credits_charged",
            "Credits charged for jobs queued here, by app.",
            ("app",),
            totals.charged_total.items(),
        )
        yield _counter(
            "lumiku_credits_refunded",
            "Credits refunded as jobs ended here, by app.",
            ("app",),
            totals.refunded_total.items(),
        )

    def _payments(self) -> Iterator[Metric]:
        duitku = self._deps.duitku
        if duitku is None:  # payments disabled: no series at all
            return
        yield _counter(
            "lumiku_payments",
            "Payments created here and callbacks handled here, by outcome (created, "
            "provider_error, credited, already_credited, failed, already_failed).",
            ("outcome",),
            duitku.outcomes.items(),
        )
        yield _counter(
            "lumiku_payment_callbacks_rejected",
            "Payment callbacks refused here, by reason.",
            ("reason",),
            duitku.rejections.items(),
        )
        yield _counter(
            "lumiku_credits_purchased",
            "Credits bought through payments credited here.",
            (),
            [((), duitku.credits_purchased)],
        )

    def _events(self) -> Iterator[Metric]:
        stats = self._deps.events.statistics()
        yield _counter(
            "lumiku_events_published", "Job events published here.", (), [((), stats.published)]
        )
        yield _counter(
            "lumiku_events_delivered",
            "Events handed to local subscribers.",
            (),
            [((), stats.delivered)],
        )
        yield _counter(
            "lumiku_events_dropped",
            "Events dropped because a subscriber's buffer was full.",
            (),
            [((), stats.dropped_overflow)],
        )
        yield _counter(
            "lumiku_events_overflows",
            "Subscribers cut off for falling behind.",
            (),
            [((), stats.overflows)],
        )
        yield _counter(
            "lumiku_events_redis_failures",
            "Redis calls of the event bus that failed.",
            (),
            [((), stats.redis_failures)],
        )
        yield _gauge(
            "lumiku_event_subscribers",
            "Live-event subscriptions (websockets and SSE streams) on this instance.",
            (),
            [((), stats.subscribers)],
        )
        if stats.fanout_connected is not None:
            yield _gauge(
                "lumiku_events_fanout_connected",
                "1 while the Redis fan-out subscription is up.",
                (),
                [((), int(stats.fanout_connected))],
            )

    def _providers(self) -> Iterator[Metric]:
        providers = self._deps.providers
        yield _counter(
            "lumiku_provider_requests",
            "Image provider calls by provider, operation and outcome.",
            ("provider", "operation", "outcome"),
            list(providers.requests.items()),
        )
        states = [
            ((name, state), int(breaker.state == state))
            for name, breaker in providers.breakers().items()
            for state in STATES
        ]
        yield _gauge(
            "lumiku_provider_breaker_state",
            "1 for each HTTP provider's current circuit breaker state.",
            ("provider", "state"),
            states,
        )
        yield _counter(
            "lumiku_provider_breaker_transitions",
            "Circuit breaker state changes by provider and new state.",
            ("provider", "state"),
            self._metrics.breaker_transitions.items(),
        )

    def _ratelimit(self) -> Iterator[Metric]:
        stats = self._deps.limiter.statistics()
        yield _counter(
            "lumiku_ratelimit_rejections",
            "Requests refused with 429 by rule.",
            ("rule",),
            stats.rejected_by_rule.items(),
        )
        yield _counter(
            "lumiku_ratelimit_store_failures",
            "Rate-limit checks made while the counters' store was down, by what the rule did "
            "(open: let through, closed: refused with 503).",
            ("mode",),
            [("open", stats.failed_open), ("closed", stats.failed_closed)],
        )

    def _reconcile(self) -> Iterator[Metric]:
        report, at = self._metrics.last_report, self._metrics.last_report_at
        if report is None or at is None:
            return  # no audit yet: absent rather than a misleading 0
        found = Counter(d.kind for d in report.discrepancies)
        kinds = dict.fromkeys((*report.checks, *found), 0)
        yield _gauge(
            "lumiku_reconcile_discrepancies",
            "Discrepancies the last ledger audit found, by check.",
            ("check",),
            [(kind, found[kind]) for kind in kinds],
        )
        yield _gauge(
            "lumiku_reconcile_last_run_timestamp_seconds",
            "When the last ledger audit finished (Unix time).",
            (),
            [((), at)],
        )

    def _db(self) -> Iterator[Metric]:
        store = self._deps.store
        pool = store.pool_statistics()
        yield _gauge(
            "lumiku_db_pool_connections",
            "Database connections by state (in_use, idle).",
            ("backend", "state"),
            [((store.backend, "in_use"), pool.in_use), ((store.backend, "idle"), pool.idle)],
        )
        yield _gauge(
            "lumiku_db_pool_max_connections",
            "The most connections the store opens.",
            ("backend",),
            [(store.backend, pool.max_size)],
        )
