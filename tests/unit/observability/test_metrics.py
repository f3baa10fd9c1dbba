"""`Metrics`: one registry per instance, bounded labels, and the series read when scraped
from the real components of `open_deps` (on both database backends)."""

from __future__ import annotations

from pathlib import Path

import attrs
import prometheus_client
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from lumiku import events
from lumiku.counters import Window
from lumiku.credits.reconcile import Discrepancy, Report
from lumiku.db.queries import load_queries
from lumiku.errors import RateLimited, RateLimiterUnavailable, RedisUnavailable, Transient
from lumiku.http.ratelimit import RateLimiter
from lumiku.observability.metrics import Metrics
from lumiku.providers.base import PoseRequest
from lumiku.supervisor import open_deps
from tests.services import settings_for
from tests.unit.providers.fake_inference import FakeInference, Reply
from tests.unit.providers.pixels import STANDING

PING = load_queries("lumiku.db").ping
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(exposition: bytes) -> Samples:
    """Every sample of the text exposition, parsed by prometheus-client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition.decode())
        for sample in family.samples
    }


def value(parsed: Samples, name: str, **labels: str) -> float | None:
    return parsed.get((name, frozenset(labels.items())))


def test_request_labels_are_templates_and_bounded() -> None:
    metrics = Metrics()
    metrics.http.observe("GET", "/api/jobs/<job_id>", 200, 0.004)
    metrics.http.observe("GET", "/api/jobs/<job_id>", 200, 0.3)
    metrics.http.observe("BREW", None, 404, 0.001)  # unknown method, nothing routed
    parsed = samples(metrics.render())
    count = "lumiku_http_request_duration_seconds_count"
    jobs = {"method": "GET", "route": "/api/jobs/<job_id>", "status": "200"}
    assert value(parsed, count, **jobs) == 2
    assert value(parsed, "lumiku_http_request_duration_seconds_bucket", **jobs, le="0.005") == 1
    assert value(parsed, "lumiku_http_request_duration_seconds_sum", **jobs) == pytest.approx(0.304)
    assert value(parsed, count, method="OTHER", route="unmatched", status="404") == 1


def test_every_instance_has_a_registry_of_its_own() -> None:
    first, second = Metrics(), Metrics()
    first.http.observe("GET", "/health/readiness", 200, 0.01)
    first.http.websocket_opened()
    count = "lumiku_http_request_duration_seconds_count"
    labels = {"method": "GET", "route": "/health/readiness", "status": "200"}
    assert value(samples(first.render()), count, **labels) == 1
    assert value(samples(second.render()), count, **labels) is None
    assert second.http.websockets_open == 0
    default = prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()
    assert "lumiku_" not in default  # never the process-wide default registry


def test_the_process_series_are_exported() -> None:
    parsed = samples(Metrics().render())
    assert (value(parsed, "process_resident_memory_bytes") or 0) > 0
    assert (value(parsed, "process_open_fds") or 0) > 0
    assert value(parsed, "process_cpu_seconds_total") is not None


async def test_a_scrape_reads_the_components_counters(tmp_path: Path, database_url: str) -> None:
    settings = settings_for(database_url, tmp_path, database_pool_min_size=2)
    async with open_deps(settings) as deps:
        metrics = deps.metrics
        before = samples(metrics.render())
        assert value(before, "lumiku_credits_charged_total", app="demo") is None
        assert value(before, "lumiku_reconcile_discrepancies", check="balances") is None

        jobs = deps.jobs.metrics
        jobs.submitted("demo.x")
        jobs.charged("demo", 10)
        jobs.charged("demo", 0)  # an unlimited user's job: nothing charged, nothing counted
        jobs.claimed("demo.x", 0.2)
        jobs.retried("demo.x", "TRANSIENT")
        jobs.stalled("demo.x")
        jobs.finished("demo.x", "failed", 1.5)
        jobs.refunded("demo", 4)
        jobs.finished("demo.x", "cancelled")  # cancelled while queued: no run time
        for _ in range(6):  # login allows 5 per 15 min per IP by default
            try:
                await deps.limiter.check("login", "203.0.113.9")
            except RateLimited:
                break
        await deps.events.publish(
            events.Event(
                type=events.QUEUED,
                job_id="00000000-0000-0000-0000-000000000001",
                user_id="u",
                seq=1,
                ts=events.utc_now(),
                data={},
            )
        )
        metrics.reconciled(
            Report(
                (Discrepancy("balances", None, "off by one", 1, 2),),
                accounts_checked=3,
                entries_checked=9,
                checks=("balances", "entry_signs"),
            )
        )
        parsed = samples(metrics.render())

    def metric(name: str, **labels: str) -> float | None:
        return value(parsed, name, **labels)

    assert metric("lumiku_jobs_submitted_total", kind="demo.x") == 1
    assert metric("lumiku_jobs_finished_total", kind="demo.x", outcome="failed") == 1
    assert metric("lumiku_jobs_finished_total", kind="demo.x", outcome="cancelled") == 1
    assert metric("lumiku_jobs_retries_total", kind="demo.x", code="TRANSIENT") == 1
    assert metric("lumiku_jobs_stalls_recovered_total", kind="demo.x") == 1
    assert metric("lumiku_jobs_queue_wait_seconds_count", kind="demo.x") == 1
    assert metric("lumiku_jobs_run_seconds_count", kind="demo.x") == 1
    assert metric("lumiku_jobs_run_seconds_sum", kind="demo.x") == 1.5
    assert metric("lumiku_credits_charged_total", app="demo") == 10
    assert metric("lumiku_credits_refunded_total", app="demo") == 4
    assert metric("lumiku_ratelimit_rejections_total", rule="login") == 1
    assert metric("lumiku_ratelimit_rejections_total", rule="register") == 0
    assert metric("lumiku_ratelimit_store_failures_total", mode="open") == 0
    assert metric("lumiku_events_published_total") == 1
    assert metric("lumiku_events_dropped_total") == 0
    assert metric("lumiku_reconcile_discrepancies", check="balances") == 1
    assert metric("lumiku_reconcile_discrepancies", check="entry_signs") == 0
    assert (metric("lumiku_reconcile_last_run_timestamp_seconds") or 0) > 0
    backend = deps.store.backend
    in_use = metric("lumiku_db_pool_connections", backend=backend, state="in_use")
    idle = metric("lumiku_db_pool_connections", backend=backend, state="idle")
    assert in_use == 0  # nothing runs during a scrape
    assert idle is not None
    assert idle >= (2 if backend == "postgres" else 1)  # the pool's minimum / the writer
    maximum = metric("lumiku_db_pool_max_connections", backend=backend)
    assert maximum == (settings.database.pool_max_size if backend == "postgres" else 5)


async def test_a_busy_pool_shows_connections_in_use(tmp_path: Path, postgres_url: str) -> None:
    settings = settings_for(postgres_url, tmp_path)
    async with open_deps(settings) as deps, deps.store.transaction() as tx:
        await tx.fetch_val(PING)
        parsed = samples(deps.metrics.render())
        assert value(parsed, "lumiku_db_pool_connections", backend="postgres", state="in_use") == 1


async def test_breakers_and_provider_requests(tmp_path: Path, sqlite_url: str) -> None:
    server = FakeInference([Reply.json(500, {"error": "down"})])
    async with trio.open_nursery() as nursery:
        base_url = await server.start(nursery)
        settings = settings_for(
            sqlite_url,
            tmp_path,
            providers_pose="huggingface",
            providers_breaker_failures=2,
            huggingface_base_url=base_url,
            huggingface_api_key="hf-test-token",
        )
        async with open_deps(settings) as deps:
            closed = samples(deps.metrics.render())
            for _ in range(2):
                with pytest.raises(Transient):
                    await deps.providers.pose(PoseRequest(STANDING, width=512, height=512))
            opened = samples(deps.metrics.render())
        nursery.cancel_scope.cancel()
    state = "lumiku_provider_breaker_state"
    assert value(closed, state, provider="huggingface", state="closed") == 1
    assert value(closed, state, provider="huggingface", state="open") == 0
    assert value(opened, state, provider="huggingface", state="open") == 1
    assert value(opened, state, provider="huggingface", state="closed") == 0
    transitions = "lumiku_provider_breaker_transitions_total"
    assert value(opened, transitions, provider="huggingface", state="open") == 1
    requests = "lumiku_provider_requests_total"
    assert (
        value(opened, requests, provider="huggingface", operation="pose", outcome="transient") == 2
    )


class DownCounters:
    """A counters store that is down (Redis unreachable)."""

    async def hit(self, key: str, window_s: int) -> Window:
        raise RedisUnavailable("down")

    async def peek(self, key: str) -> Window:
        raise RedisUnavailable("down")

    async def clear(self, key: str) -> None:
        raise RedisUnavailable("down")


async def test_rate_limit_store_failures_are_counted_by_mode(
    tmp_path: Path, sqlite_url: str
) -> None:
    async with open_deps(settings_for(sqlite_url, tmp_path)) as opened:
        deps = attrs.evolve(
            opened,
            limiter=RateLimiter(opened.settings.ratelimit, DownCounters()),
            metrics=Metrics(),
        )
        deps.metrics.watch(deps)
        with pytest.raises(RateLimiterUnavailable):
            await deps.limiter.check("login", "203.0.113.9")  # auth fails closed
        await deps.limiter.check("health", "203.0.113.9")  # the rest fails open
        await deps.limiter.check("health", "203.0.113.9")
        parsed = samples(deps.metrics.render())
    failures = "lumiku_ratelimit_store_failures_total"
    assert value(parsed, failures, mode="closed") == 1
    assert value(parsed, failures, mode="open") == 2
