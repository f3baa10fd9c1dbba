"""The Store's client-side bounds: PostgreSQL behind a TcpProxy that goes silent or resets,
and SQLite's writer and file locks. Every call ends in `Unavailable` within its bound, and
the store serves again after the restore."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest
import trio

from lumiku.db.queries import load_queries
from lumiku.errors import Unavailable
from tests.services import open_test_store

if TYPE_CHECKING:
    from pathlib import Path

    from lumiku.db.store import Store, Tx
    from lumiku.testing import TcpProxy

Q = load_queries("lumiku.db")
BOUND_S = 0.5
SLACK_S = 1.5


async def _ping_in_unit(tx: Tx) -> int:
    return int(await tx.fetch_val(Q.ping))


async def _every_way_is_unavailable(store: Store) -> None:
    """A statement, a transaction and a unit of work, each within the bound."""
    with trio.fail_after(BOUND_S + SLACK_S), pytest.raises(Unavailable):
        await store.ping()
    with trio.fail_after(2 * (BOUND_S + SLACK_S)), pytest.raises(Unavailable):
        async with store.transaction() as tx:
            await tx.fetch_val(Q.ping)
    with trio.fail_after(BOUND_S + SLACK_S), pytest.raises(Unavailable):
        await store.unit(_ping_in_unit)


@pytest.mark.parametrize("mode", ["drop", "reset"])
async def test_postgres_calls_are_bounded_and_the_pool_heals(
    postgres_proxy: tuple[TcpProxy, str], tmp_path: Path, mode: str
) -> None:
    proxy, url = postgres_proxy
    async with open_test_store(
        url,
        tmp_path,
        database_command_timeout_s=BOUND_S,
        database_connect_timeout_s=BOUND_S,
        database_pool_min_size=3,
        database_pool_max_size=3,
    ) as store:
        async with trio.open_nursery() as nursery:  # three connections in the pool, idle
            for _ in range(3):
                nursery.start_soon(store.ping)
        if mode == "drop":
            proxy.drop()
        else:
            proxy.take_down()
        await _every_way_is_unavailable(store)
        # Concurrent calls as well: none waits behind another's unanswered one.
        with trio.fail_after(BOUND_S + SLACK_S):
            async with trio.open_nursery() as nursery:
                for _ in range(6):
                    nursery.start_soon(_expect_unavailable, store)

        proxy.bring_up()
        with trio.fail_after(10):
            while True:
                try:
                    await store.ping()
                    break
                except Unavailable:
                    await trio.sleep(0.05)
        # Every connection the pool hands out now works.
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for _ in range(12):
                    nursery.start_soon(store.unit, _ping_in_unit)
            assert store.pool_statistics().in_use == 0


async def _expect_unavailable(store: Store) -> None:
    with pytest.raises(Unavailable):
        await store.ping()


async def test_postgres_opening_against_a_silent_server_is_bounded(
    postgres_proxy: tuple[TcpProxy, str], tmp_path: Path
) -> None:
    proxy, url = postgres_proxy
    proxy.drop()
    with trio.fail_after(2 * BOUND_S + SLACK_S), pytest.raises(Unavailable):
        async with open_test_store(
            url, tmp_path, database_command_timeout_s=BOUND_S, database_connect_timeout_s=BOUND_S
        ):
            pass
    proxy.bring_up()


async def test_sqlite_waiting_for_the_writer_is_bounded(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bounds.db'}"
    async with open_test_store(url, tmp_path, database_command_timeout_s=BOUND_S) as store:
        await store.migrate()
        held = trio.Event()
        release = trio.Event()

        async def hold_the_writer() -> None:
            async with store.transaction() as tx:
                await tx.fetch_val(Q.ping)
                held.set()
                await release.wait()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(hold_the_writer)
            await held.wait()
            with trio.fail_after(BOUND_S + SLACK_S), pytest.raises(Unavailable, match="writer"):
                async with store.transaction() as tx:
                    await tx.fetch_val(Q.ping)
            release.set()
        async with store.transaction() as tx:  # free again
            assert await tx.fetch_val(Q.ping) == 1


async def test_sqlite_locked_by_another_process_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "locked.db"
    url = f"sqlite:///{path}"
    async with open_test_store(url, tmp_path, database_connect_timeout_s=0.2) as store:
        await store.migrate()
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            with trio.fail_after(SLACK_S * 2), pytest.raises(Unavailable, match="locked"):
                async with store.transaction() as tx:
                    await tx.fetch_val(Q.ping)
        finally:
            other.close()
