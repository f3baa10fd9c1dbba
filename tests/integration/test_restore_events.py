"""Terminal events a crash lost are restored by the reaper's walk (`jobs.restore`), on
PostgreSQL with Redis: a job finished without its event gets exactly one, a job whose event
was published gets none, and a second walk restores nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import coredis
import pytest
import trio

from lumiku import jobs
from lumiku.accounts.service import create_user
from lumiku.apps.registry import App, Registry
from lumiku.credits.ledger import CreditsPolicy
from lumiku.deps import Deps
from lumiku.errors import RedisUnavailable
from lumiku.events import STREAM_PREFIX, TERMINAL
from lumiku.jobs.announce import announce
from lumiku.jobs.kinds import JobKind, Outcome
from lumiku.jobs.restore import SETTLE_S, RestoreCursor, restore_terminal_events
from lumiku.supervisor import open_deps
from lumiku.testing import TcpProxy
from tests.e2e.harness import STRONG_PASSWORD
from tests.services import settings_for


async def _noop(_ctx: object) -> Outcome:
    return Outcome({})


REGISTRY = Registry([App("demo", "Demo", kinds=(JobKind("demo.noop", _noop),))])


async def finished_job(deps: Deps, user_id: object, *, announced: bool) -> jobs.Job:
    """A job run to `succeeded`; its terminal event published only when `announced` (else
    its instance "died" right after the commit)."""
    submitted = await jobs.submit(
        deps.store,
        user_id=user_id,  # type: ignore[arg-type]
        tags=(),
        app="demo",
        kind="demo.noop",
        payload={},
        cost=5,
        policy=CreditsPolicy.from_settings(deps.settings.credits),
    )
    (claimed,) = await jobs.claim(
        deps.store,
        worker_id="worker",
        slots={"demo.noop": 1},
        per_user_running=2,
        lease_s=30,
        now=datetime.now(UTC),
    )
    assert claimed.id == submitted.job.id
    done = await jobs.complete(deps.store, claimed.id, claimed.attempt, {"ok": True})
    assert done is not None
    if announced:
        await announce(deps.events, done)
    return done.job


async def terminal_types(redis_url: str, job: jobs.Job) -> list[str]:
    async with coredis.Redis.from_url(redis_url, verify_version=False) as client:
        entries = await client.xrange(STREAM_PREFIX + str(job.id), "-", "+")
    found = [json.loads(entry.field_values[b"e"])["type"] for entry in entries]
    return [kind for kind in found if kind in TERMINAL]


async def test_the_reapers_walk_restores_lost_terminal_events_once(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = settings_for(postgres_url, tmp_path, redis_url=redis_url)
    with trio.fail_after(30):
        async with open_deps(settings, apps=REGISTRY) as deps:
            cursor = RestoreCursor.starting(datetime.now(UTC))
            user = await create_user(
                deps, email="r@example.com", password=STRONG_PASSWORD, credits=100
            )
            lost = await finished_job(deps, user.id, announced=False)
            published = await finished_job(deps, user.id, announced=True)
            assert await terminal_types(redis_url, lost) == []

            # Too fresh: its own instance may still be publishing it.
            assert await restore_terminal_events(deps, cursor, datetime.now(UTC)) == 0
            later = datetime.now(UTC) + timedelta(seconds=SETTLE_S + 1)
            assert await restore_terminal_events(deps, cursor, later) == 1
            assert await terminal_types(redis_url, lost) == ["generation:completed"]
            assert await terminal_types(redis_url, published) == ["generation:completed"]

            # A later walk starts after what it saw; a fresh one (a restarted instance)
            # sees both jobs again and restores nothing.
            assert cursor.job_id in (lost.id, published.id)
            fresh = RestoreCursor.starting(datetime.now(UTC))
            assert await restore_terminal_events(deps, fresh, later) == 0
            assert await terminal_types(redis_url, lost) == ["generation:completed"]


async def test_without_redis_there_is_nothing_to_restore(postgres_url: str, tmp_path: Path) -> None:
    settings = settings_for(postgres_url, tmp_path)
    async with open_deps(settings, apps=REGISTRY) as deps:
        cursor = RestoreCursor.starting(datetime.now(UTC))
        user = await create_user(deps, email="n@example.com", password=STRONG_PASSWORD, credits=9)
        await finished_job(deps, user.id, announced=False)
        later = datetime.now(UTC) + timedelta(seconds=SETTLE_S + 1)
        assert await restore_terminal_events(deps, cursor, later) == 0


async def test_the_reapers_walk_first_writes_what_was_published_while_redis_was_down(
    postgres_url: str, redis_proxy: tuple[TcpProxy, str], redis_url: str, tmp_path: Path
) -> None:
    """A job finished (and announced) while Redis was cut: its terminal event waited in the
    bus's backlog; the next walk writes it, then finds nothing to restore. Exactly one."""
    proxy, proxied_url = redis_proxy
    settings = settings_for(postgres_url, tmp_path, redis_url=proxied_url)
    with trio.fail_after(30):
        async with open_deps(settings, apps=REGISTRY) as deps:
            cursor = RestoreCursor.starting(datetime.now(UTC))
            user = await create_user(
                deps, email="b@example.com", password=STRONG_PASSWORD, credits=100
            )
            proxy.take_down()
            during = await finished_job(deps, user.id, announced=True)
            assert deps.events.statistics().backlog == 1
            later = datetime.now(UTC) + timedelta(seconds=SETTLE_S + 1)
            with pytest.raises(RedisUnavailable):
                await restore_terminal_events(deps, cursor, later)
            proxy.bring_up()
            while True:  # until the bus's breaker lets Redis be called again
                try:
                    restored = await restore_terminal_events(deps, cursor, later)
                except RedisUnavailable:
                    await trio.sleep(0.05)
                else:
                    break
            assert restored == 0  # the backlog had it
            assert deps.events.statistics().backlog == 0
            assert await terminal_types(redis_url, during) == ["generation:completed"]
