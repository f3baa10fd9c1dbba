from __future__ import annotations

from pathlib import Path

import attrs
import pytest
import trio

from lumiku.errors import Unavailable
from lumiku.observability.health import Health, storage_check
from lumiku.shutdown import ShutdownState
from tests.e2e.harness import make_settings


@attrs.define
class FakeStore:
    """Just enough of a Store for readiness: counts pings, can fail or hang."""

    pings: int = 0
    fail: bool = False
    hang: bool = False
    backend: str = "fake"

    async def ping(self) -> None:
        self.pings += 1
        if self.hang:
            await trio.sleep_forever()
        if self.fail:
            raise Unavailable("connection refused to db.internal:5432")


def make_health(tmp_path: Path, store: FakeStore, state: ShutdownState | None = None) -> Health:
    settings = make_settings(tmp_path)
    return Health(settings, store, None, state or ShutdownState())  # type: ignore[arg-type]


async def test_readiness_is_cached_for_one_second(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = FakeStore()
    health = make_health(tmp_path, store)
    assert (await health.readiness())[0] == 200
    await trio.sleep(0.5)
    assert (await health.readiness())[0] == 200
    assert store.pings == 1
    await trio.sleep(0.6)
    await health.readiness()
    assert store.pings == 2


async def test_concurrent_probes_share_one_check(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    store = FakeStore()
    health = make_health(tmp_path, store)
    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(health.readiness)
    assert store.pings == 1


async def test_failed_dependency_is_503_without_details(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    health = make_health(tmp_path, FakeStore(fail=True))
    status, body = await health.readiness()
    assert status == 503
    assert body["status"] == "not_ready"
    assert body["checks"]["database"] == {"status": "error", "error": "unavailable"}
    assert "db.internal" not in str(body)


async def test_hanging_dependency_times_out(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    health = make_health(tmp_path, FakeStore(hang=True))
    start = trio.current_time()
    status, body = await health.readiness()
    assert status == 503
    assert body["checks"]["database"]["error"] == "timeout"
    assert trio.current_time() - start == pytest.approx(0.5)  # health.check_timeout_s


async def test_draining_answers_at_once_without_checking(tmp_path: Path) -> None:
    store = FakeStore()
    state = ShutdownState()
    health = make_health(tmp_path, store, state)
    assert (await health.readiness())[0] == 200
    state.request("test")
    assert await health.readiness() == (503, {"status": "draining"})
    assert store.pings == 1


def test_storage_check_reports_free_space_and_writability(tmp_path: Path) -> None:
    ok = storage_check(str(tmp_path / "files"), 0)
    assert ok.status == "ok"
    assert ok.extra["free_bytes"] > 0
    low = storage_check(str(tmp_path / "files"), 2**62)
    assert (low.status, low.error) == ("error", "low free space")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert storage_check(str(blocker / "sub"), 0).error == "not writable"
