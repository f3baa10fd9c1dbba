"""Process-level job tests' tools: one service at a time over the same database and Redis,
stopped or SIGKILLed and started again; and readers of what jobs leave behind (their
ledger entries, their Redis event streams)."""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import attrs
import httpx
import trio

from lumiku import config, events
from lumiku.credits import ledger
from lumiku.db.store import Store
from lumiku.jobs.models import REF_TYPE
from lumiku.redis import Client, open_redis, read_stream_after
from tests.e2e.harness import bearer
from tests.e2e.process import ServiceProcess, start

# Registration is cheap and never rate limited: these tests register many users from one IP.
JOB_TEST_ENV = {
    "LUMIKU_AUTH_ARGON2_TIME_COST": "1",
    "LUMIKU_AUTH_ARGON2_MEMORY_KIB": "1024",
    "LUMIKU_AUTH_ARGON2_PARALLELISM": "1",
    "LUMIKU_RATELIMIT_ENABLED": "false",
}


def settings_of(env: Mapping[str, str], tmp_path: Path) -> config.Settings:
    """The settings a service started with `env` runs with (same database, Redis, secret)."""
    return config.load_settings(environ=env, default_path=str(tmp_path / "absent.toml"))


def unflushed_database(redis_url: str) -> str:
    """`redis_url` (the `redis_url` fixture's) moved to the neighbouring database number.

    The fixture empties its database for every test that asks for it, so a test session
    running beside this one (another engineer's, another worktree's) would wipe the job
    streams mid-run. Nothing is flushed here: job ids are unique, and the streams expire
    after an hour (`events.local.RING_AGE_S`).
    """
    parts = urlsplit(redis_url)
    number = int(parts.path.strip("/") or "0")
    return urlunsplit(parts._replace(path=f"/{number - 1 if number > 0 else number + 1}"))


def base_url_of(ready: Mapping[str, Any]) -> str:
    addresses = ready["addresses"]
    assert isinstance(addresses, list)
    return f"http://127.0.0.1:{str(addresses[0]).rsplit(':', 1)[1]}"


@attrs.define
class Restarts:
    """The service run as one process at a time with the same environment; every instance
    and its log is kept (`instances`) for the assertion messages."""

    nursery: trio.Nursery
    env: Mapping[str, str]
    args: Sequence[str] = ("-m", "tests.e2e.launcher")
    instances: list[ServiceProcess] = attrs.field(factory=list)
    base_url: str = ""
    # "#n ready|SIGKILL|SIGTERM at <UTC time>", for the assertion messages
    history: list[str] = attrs.field(factory=list)

    @property
    def current(self) -> ServiceProcess:
        return self.instances[-1]

    async def start(self) -> str:
        """Start an instance and wait until it serves; its base URL."""
        service = await start(self.nursery, self.env, self.args)
        self.instances.append(service)
        self.base_url = base_url_of(await service.wait_for("service.ready"))
        self._note("ready")
        return self.base_url

    async def stop(self, signum: signal.Signals = signal.SIGTERM) -> int:
        """Signal the current instance and wait for it to exit; its exit code."""
        self._note(signum.name)
        self.current.signal(signum)
        return await self.current.process.wait()

    def _note(self, what: str) -> None:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        self.history.append(f"#{len(self.instances)} {what} at {now}")

    def kill_leftovers(self) -> None:
        for service in self.instances:
            if service.process.returncode is None:
                service.process.kill()


@contextlib.asynccontextmanager
async def open_restarts(
    env: Mapping[str, str], args: Sequence[str] = ("-m", "tests.e2e.launcher")
) -> AsyncIterator[Restarts]:
    """`Restarts` over `env` (running `python args`, the test launcher by default); on exit,
    any instance still running is killed (a failed test leaves no service behind)."""
    async with trio.open_nursery() as nursery:
        restarts = Restarts(nursery, env, args)
        try:
            yield restarts
        finally:
            restarts.kill_leftovers()


async def submit(
    client: httpx.AsyncClient, token: str, kind: str, payload: dict[str, Any], cost: int
) -> dict[str, Any]:
    """Queue a `demo` job over `POST /api/_test/jobs`; the job as the API shows it."""
    response = await client.post(
        "/api/_test/jobs",
        json={"app": "demo", "kind": kind, "payload": payload, "cost": cost},
        headers=bearer(token),
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()["job"]
    return job


async def job_entries(store: Store, user_id: UUID) -> list[ledger.Entry]:
    """Every ledger entry of `user_id` that references a job, oldest first."""
    entries: list[ledger.Entry] = []
    cursor = None
    while True:
        page = await ledger.history(store, user_id, limit=ledger.MAX_PAGE, cursor=cursor)
        entries.extend(e for e in page.entries if e.ref_type == REF_TYPE)
        cursor = page.next_cursor
        if cursor is None:
            return entries[::-1]


async def stream_events(redis: Client, job_id: str) -> list[dict[str, Any]]:
    """The events kept in the job's Redis stream (`lumiku:events:job:<id>`), in seq order."""
    raw = await read_stream_after(redis, events.STREAM_PREFIX + job_id, 0)
    return [json.loads(entry) for entry in raw]


def terminal_types(stream: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in stream if event["type"] in events.TERMINAL]


async def wait_for_terminal_events(
    settings: config.Settings, job_ids: Iterable[str], within_s: float
) -> None:
    """Return once every job's stream holds a terminal event, or after `within_s` (the
    caller's checks then name the jobs without one)."""
    async with open_redis(settings.redis) as redis:
        assert redis is not None
        pending = set(job_ids)
        with trio.move_on_after(within_s):
            while True:
                pending = {j for j in pending if not terminal_types(await stream_events(redis, j))}
                if not pending:
                    return
                await trio.sleep(0.5)


def lines_about(instances: list[ServiceProcess], job_id: str) -> list[str]:
    """Each instance's log lines that mention `job_id`, labelled by instance number."""
    return [
        f"#{number} {json.dumps(line)}"
        for number, service in enumerate(instances, 1)
        for line in service.lines
        if job_id in json.dumps(line)
    ]
