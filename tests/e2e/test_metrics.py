"""`GET /metrics` on the real service (SPEC §13.3): open in development, behind the bearer
token when one is configured, only on its own listener with `metrics.bind`; and after real
requests, jobs and websockets the exposition carries their series and parses."""

from __future__ import annotations

import io
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from lumiku import supervisor
from lumiku.apps.registry import App, Registry
from lumiku.errors import Permanent
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from lumiku.observability import logging as logs
from tests.e2e.harness import Service, bearer, make_settings, register, running_service
from tests.e2e.wsclient import connect

TOKEN = "metrics-T0ken-4471-scrape"
COST = 10
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape_until(
    client: httpx.AsyncClient, ready: Callable[[Samples], bool], **request: Any
) -> Samples:
    """Scrape until `ready` holds (counters trail the responses by a moment)."""
    with trio.fail_after(10):
        while True:
            response = await client.get("/metrics", **request)
            assert response.status_code == 200, response.text
            samples = parse(response.text)
            if ready(samples):
                return samples
            await trio.sleep(0.02)


async def demo(ctx: JobContext) -> Outcome:
    if ctx.payload.get("fail"):
        raise Permanent("rejected")
    return Outcome({"ok": True})


DEMO = Registry([App("demo", "Demo", kinds=(JobKind("demo.step", demo, concurrency=2),))])


async def test_open_without_token_or_bind_in_development(tmp_path: Path) -> None:
    async with running_service(make_settings(tmp_path)) as service:
        response = await service.client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert response.headers["x-request-id"]  # through the edge like every route
        samples = parse(response.text)
        assert value(samples, "process_resident_memory_bytes") > 0
        head = await service.client.head("/metrics")
        assert head.status_code == 200
        assert head.content == b""
        posted = await service.client.post("/metrics")
        assert posted.status_code == 405
        assert posted.json()["code"] == "METHOD_NOT_ALLOWED"


async def test_the_token_guards_the_metrics(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, {"LUMIKU_METRICS_TOKEN": TOKEN})
    async with running_service(settings) as service:
        client = service.client
        refused = [
            await client.get("/metrics"),
            await client.get("/metrics", headers=bearer("metrics-T0ken-4471-scrapE")),
            await client.get("/metrics", headers=bearer(TOKEN[:-1])),
            await client.get("/metrics", headers={"authorization": f"Basic {TOKEN}"}),
        ]
        for response in refused:
            assert response.status_code == 401
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["www-authenticate"] == "Bearer"
            body = response.json()
            assert body["code"] == "UNAUTHORIZED"
            assert body["request_id"] == response.headers["x-request-id"]
            assert TOKEN not in response.text
        allowed = await client.get("/metrics", headers=bearer(TOKEN))
        assert allowed.status_code == 200
        samples = parse(allowed.text)
        # the refusals were counted like any request, under the route, not the raw path
        assert value(
            samples,
            "lumiku_http_request_duration_seconds_count",
            method="GET",
            route="/metrics",
            status="401",
        ) == len(refused)
    assert TOKEN not in service.log_text()


async def test_bind_serves_the_metrics_only_on_their_own_listener(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, {"LUMIKU_METRICS_BIND": "127.0.0.1:0", "LUMIKU_METRICS_TOKEN": TOKEN}
    )
    async with running_service(settings) as service:
        main = await service.client.get("/metrics", headers=bearer(TOKEN))
        assert main.status_code == 404
        assert main.json()["code"] == "NOT_FOUND"
        ready = await service.wait_for_log(event="service.ready")
        (address,) = ready["metrics_addresses"]
        assert address != service.base_url
        async with httpx.AsyncClient(base_url=address, timeout=10) as internal:
            assert (await internal.get("/metrics")).status_code == 401  # the token still holds
            await service.client.get("/health")
            samples = await scrape_until(
                internal,
                lambda s: (
                    value(
                        s,
                        "lumiku_http_request_duration_seconds_count",
                        method="GET",
                        route="/health",
                        status="200",
                    )
                    == 1
                ),
                headers=bearer(TOKEN),
            )
            # the main app's series; the internal listener's own requests are not counted
            assert not [key for key in samples if ("route", "/metrics") in key[1]]
            other = await internal.get("/api/jobs", headers=bearer(TOKEN))
            assert other.status_code == 404
            assert other.json()["code"] == "NOT_FOUND"
            assert other.headers["x-content-type-options"] == "nosniff"
    assert "Lifespan" not in service.log_text()  # the listener's app speaks ASGI lifespan
    stopped = [line for line in service.log_lines() if line["event"] == "service.stopped"]
    assert [line["exit_code"] for line in stopped] == [0]  # both listeners drained


async def test_the_bind_listener_never_shares_its_port(tmp_path: Path) -> None:
    """With http.reuse_port, a second instance on the same metrics.bind must fail to start
    rather than answer some of the scrapes meant for the first."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"LUMIKU_HTTP_REUSE_PORT": "true", "LUMIKU_METRICS_BIND": f"127.0.0.1:{port}"}
        log = io.StringIO()
        logs.configure("info", "json", stream=log)
        with trio.fail_after(20):
            code = await supervisor.run(make_settings(tmp_path, env), apps=Registry())
    assert code == supervisor.EXIT_FAILED
    assert '"event": "service.start_failed"' in log.getvalue().replace('":"', '": "')


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> Any:
    env = {"LUMIKU_DATABASE_URL": database_url, "LUMIKU_JOBS_POLL_S": "0.05"}
    with trio.fail_after(60):
        async with running_service(make_settings(tmp_path, env), apps=DEMO) as svc:
            yield svc


async def submit(service: Service, token: str, *, fail: bool) -> str:
    response = await service.client.post(
        "/api/_test/jobs",
        json={"app": "demo", "kind": "demo.step", "payload": {"fail": fail}, "cost": COST},
        headers=bearer(token),
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job"]["id"])


async def test_requests_jobs_credits_and_events_show_in_the_series(service: Service) -> None:
    user = await register(service.client, "metrics@example.com")
    async with connect(f"{service.ws_url}?token={user['token']}"):
        live = await scrape_until(
            service.client, lambda s: value(s, "lumiku_event_subscribers") == 1
        )
        assert value(live, "lumiku_websocket_connections") == 1
        await submit(service, user["token"], fail=False)
        await submit(service, user["token"], fail=True)

        def settled(s: Samples) -> bool:
            finished = "lumiku_jobs_finished_total"
            return (
                value(s, finished, kind="demo.step", outcome="succeeded") == 1
                and value(s, finished, kind="demo.step", outcome="failed") == 1
                and value(s, "lumiku_credits_refunded_total", app="demo") == COST
            )

        samples = await scrape_until(service.client, settled)
    assert value(samples, "lumiku_jobs_submitted_total", kind="demo.step") == 2
    assert value(samples, "lumiku_credits_charged_total", app="demo") == 2 * COST
    assert value(samples, "lumiku_jobs_queue_wait_seconds_count", kind="demo.step") == 2
    assert value(samples, "lumiku_jobs_run_seconds_count", kind="demo.step") == 2
    assert value(samples, "lumiku_events_published_total") >= 6  # queued, started, terminal ×2
    assert value(samples, "lumiku_events_delivered_total") >= 6  # to the open websocket
    assert value(samples, "lumiku_websocket_connections_opened_total") == 1
    requests = "lumiku_http_request_duration_seconds_count"
    assert value(samples, requests, method="POST", route="/api/_test/jobs", status="202") == 2
    assert value(samples, requests, method="POST", route="/api/auth/register", status="201") == 1
    backend = "postgres" if service.settings.database.url.startswith("postgres") else "sqlite"
    maximum = value(samples, "lumiku_db_pool_max_connections", backend=backend)
    assert maximum >= 1
    idle = value(samples, "lumiku_db_pool_connections", backend=backend, state="idle")
    assert 1 <= idle <= maximum
    gone = await scrape_until(
        service.client, lambda s: value(s, "lumiku_websocket_connections") == 0
    )
    assert value(gone, "lumiku_event_subscribers") == 0
    unknown = await service.client.get("/no/such/path/3f9a")
    assert unknown.status_code == 404
    after = await scrape_until(
        service.client,
        lambda s: value(s, requests, method="GET", route="unmatched", status="404") == 1,
    )
    assert not [key for key in after if ("route", "/no/such/path/3f9a") in key[1]]
