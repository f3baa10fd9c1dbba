"""Outage scenarios against the real process: the service reaches PostgreSQL and Redis
through TCP proxies of the suite's own, which a scenario cuts (reset: every connection
closed and new ones refused; drop: connections stay open and carry nothing, as with a dead
host) while users keep submitting Avatar Creator generations and readiness is polled every
100 ms. What every request, every readiness answer and every cut looked like is recorded
for the checks (`Record`)."""

from __future__ import annotations

import contextlib
import itertools
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Final, Literal
from urllib.parse import urlsplit, urlunsplit

import attrs
import httpx
import trio

from lumiku.testing import TcpProxy
from tests.e2e.chaos import JOB_TEST_ENV, Restarts, open_restarts, unflushed_database
from tests.e2e.harness import bearer, register
from tests.e2e.process import base_env

Mode = Literal["reset", "drop"]
Target = Literal["postgres", "redis"]

API: Final = "/api/apps/avatar-creator"
USERS: Final = 3
REQUEST_TIMEOUT_S: Final = 10.0  # every request answers within this (issue 13)
READINESS_EVERY_S: Final = 0.1
# Each user submits a generation every SUBMIT_EVERY_S: a steady stream the workers keep up
# with, so the queue does not grow for reasons unrelated to the outage.
SUBMIT_EVERY_S: Final = 0.5
TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled"})
SERVE: Final = ("-m", "lumiku", "serve")  # the real command, with the built-in apps


@attrs.define
class Answer:
    """One request of the load: when it was sent, how long it took, what came back."""

    at: float
    took_s: float
    status: int | None  # None: no answer (timed out, connection broken)
    code: str | None
    error: str | None = None


@attrs.define
class Record:
    answers: list[Answer] = attrs.field(factory=list)
    readiness: list[tuple[float, int | None]] = attrs.field(factory=list)
    generations: list[tuple[str, str]] = attrs.field(factory=list)  # (token, generation id)
    cuts: list[tuple[Target, Mode, float, float]] = attrs.field(factory=list)

    def unanswered(self) -> list[Answer]:
        return [a for a in self.answers if a.status is None]

    def server_errors(self) -> list[Answer]:
        """Answers that are neither success nor a clean 503 problem."""
        return [
            a for a in self.answers if a.status is not None and a.status >= 500 and a.status != 503
        ]

    def first_readiness(self, after: float, status: int, *, until: float) -> float | None:
        """When readiness was first seen answering `status` in [after, until]."""
        for at, seen in self.readiness:
            if after <= at <= until and seen == status:
                return at
        return None


def trouble(service: Restarts) -> str:
    """The current instance's last warnings and errors, whole, for an assertion message."""
    lines = [line for line in service.current.lines if line.get("level") != "info"]
    return "\n".join(json.dumps(line) for line in lines[-40:])


def _through(url: str, port: int) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@attrs.define
class Proxies:
    postgres: TcpProxy
    redis: TcpProxy

    def of(self, target: Target) -> TcpProxy:
        return self.postgres if target == "postgres" else self.redis


@contextlib.asynccontextmanager
async def open_proxies(
    postgres_url: str, redis_url: str
) -> AsyncIterator[tuple[Proxies, str, str]]:
    """Proxies in front of PostgreSQL and Redis, and the two URLs that go through them."""
    pg, rd = urlsplit(postgres_url), urlsplit(redis_url)
    assert pg.hostname is not None
    assert rd.hostname is not None
    proxies = Proxies(
        TcpProxy(pg.hostname, pg.port or 5432), TcpProxy(rd.hostname, rd.port or 6379)
    )
    async with trio.open_nursery() as nursery:
        pg_port = await nursery.start(proxies.postgres.serve)
        redis_port = await nursery.start(proxies.redis.serve)
        yield proxies, _through(postgres_url, pg_port), _through(redis_url, redis_port)
        nursery.cancel_scope.cancel()


def outage_env(
    tmp_path: Path, database_url: str, redis_url: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a service under outage tests: short leases and backoffs (jobs left
    by a failed write come back soon), plenty of credits, no rate limits."""
    return base_env(
        tmp_path,
        {
            **JOB_TEST_ENV,
            "LUMIKU_DATABASE_URL": database_url,
            "LUMIKU_REDIS_URL": unflushed_database(redis_url),
            "LUMIKU_CREDITS_WELCOME_BONUS": "1000000",
            "LUMIKU_JOBS_LEASE_S": "3",
            "LUMIKU_JOBS_POLL_S": "0.5",
            "LUMIKU_JOBS_BACKOFF_S": "0.5",
            "LUMIKU_JOBS_BACKOFF_MAX_S": "2",
            "LUMIKU_SHUTDOWN_GRACE_S": "5",
            **(extra or {}),
        },
    )


async def _setup_user(client: httpx.AsyncClient, n: int) -> tuple[str, str]:
    user = await register(client, f"outage{n}-{uuid.uuid4().hex[:6]}@example.com")
    token = user["token"]
    created = await client.post(f"{API}/projects", json={"name": "Load"}, headers=bearer(token))
    assert created.status_code == 201, created.text
    return token, created.json()["project"]["id"]


async def _load(
    client: httpx.AsyncClient, token: str, project_id: str, record: Record, stop: trio.Event
) -> None:
    """Submit one generation after another until `stop`; record every answer."""
    for n in itertools.count():
        if stop.is_set():
            return
        started = trio.current_time()
        body = {"name": f"Load {n}", "prompt": "a portrait for the outage test", "seed": n}
        try:
            with trio.fail_after(REQUEST_TIMEOUT_S):
                response = await client.post(
                    f"{API}/projects/{project_id}/avatars/generate",
                    json=body,
                    headers=bearer(token),
                )
        except (trio.TooSlowError, httpx.HTTPError) as exc:
            took = trio.current_time() - started
            record.answers.append(Answer(started, took, None, None, repr(exc)))
            continue
        took = trio.current_time() - started
        code = None
        if response.headers.get("content-type", "").startswith("application/problem+json"):
            code = response.json().get("code")
        record.answers.append(Answer(started, took, response.status_code, code))
        if response.status_code == 202:
            record.generations.append((token, response.json()["generation"]["id"]))
        await trio.sleep(max(0.0, SUBMIT_EVERY_S - took))


async def _poll_readiness(client: httpx.AsyncClient, record: Record, stop: trio.Event) -> None:
    while not stop.is_set():
        at = trio.current_time()
        try:
            with trio.fail_after(REQUEST_TIMEOUT_S):
                status: int | None = (await client.get("/health/readiness")).status_code
        except (trio.TooSlowError, httpx.HTTPError):
            status = None
        record.readiness.append((at, status))
        await trio.sleep(max(0.0, READINESS_EVERY_S - (trio.current_time() - at)))


def cut(proxy: TcpProxy, mode: Mode) -> None:
    if mode == "reset":
        proxy.take_down()
    else:
        proxy.drop()


@attrs.define
class Scenario:
    """A running service under load; `outage()` cuts a dependency for a while."""

    proxies: Proxies
    base_url: str
    service: Restarts
    record: Record = attrs.field(factory=Record)
    _stop: trio.Event = attrs.field(factory=trio.Event)
    _load_done: trio.Event = attrs.field(factory=trio.Event)

    async def outage(self, targets: Sequence[Target], mode: Mode, seconds: float) -> None:
        """Cut `targets` in `mode` for `seconds`, bring them back, then wait until readiness
        has answered 200 again (bounded: the checks say how long it took)."""
        started = trio.current_time()
        for target in targets:
            cut(self.proxies.of(target), mode)
        await trio.sleep(seconds)  # the outage's length is the scenario, not a wait for state
        for target in targets:
            self.proxies.of(target).bring_up()
        restored = trio.current_time()
        for target in targets:
            self.record.cuts.append((target, mode, started, restored))
        with trio.move_on_after(10):
            while self.record.first_readiness(restored, 200, until=float("inf")) is None:
                await trio.sleep(0.05)
        await trio.sleep(1.0)  # some traffic with everything up before the next cut

    async def end_load(self) -> None:
        """Stop submitting and polling; return once every request in flight has answered."""
        self._stop.set()
        await self._load_done.wait()

    async def _run_load(self, client: httpx.AsyncClient, users: list[tuple[str, str]]) -> None:
        try:
            async with trio.open_nursery() as nursery:
                for token, project_id in users:
                    nursery.start_soon(_load, client, token, project_id, self.record, self._stop)
                nursery.start_soon(_poll_readiness, client, self.record, self._stop)
        finally:
            self._load_done.set()


@contextlib.asynccontextmanager
async def open_scenario(env: Mapping[str, str], proxies: Proxies) -> AsyncIterator[Scenario]:
    """Start the service (`scenario.service`), register the users, start the load and the
    readiness poller. On exit the load stops and any instance still running is killed."""
    async with open_restarts(env, SERVE) as service:
        await service.start()
        limits = httpx.Limits(max_connections=USERS + 2)
        async with (
            httpx.AsyncClient(base_url=service.base_url, timeout=30, limits=limits) as client,
            trio.open_nursery() as nursery,
        ):
            users = [await _setup_user(client, n) for n in range(USERS)]
            scenario = Scenario(proxies, service.base_url, service=service)
            nursery.start_soon(scenario._run_load, client, users)
            try:
                yield scenario
            finally:
                scenario._stop.set()


async def wait_for_generations(
    base_url: str, generations: Sequence[tuple[str, str]], within_s: float
) -> dict[str, dict[str, object]]:
    """Each generation as the API shows it once all are terminal, or as last seen after
    `within_s` (polled together, a round every 0.2 s)."""
    seen: dict[str, dict[str, object]] = {}
    pending = dict((generation_id, token) for token, generation_id in generations)
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        with trio.move_on_after(within_s):
            while pending:
                for generation_id, token in list(pending.items()):
                    response = await client.get(
                        f"{API}/generations/{generation_id}", headers=bearer(token)
                    )
                    if response.status_code == 200:
                        generation = response.json()["generation"]
                        seen[generation_id] = generation
                        if generation["status"] in TERMINAL:
                            del pending[generation_id]
                await trio.sleep(0.2)
    return seen
