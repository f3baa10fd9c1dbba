"""PostgreSQL-only behaviour of the Store: cancellation mid-statement, a server that goes
away, pool and session settings, secrets kept out of messages."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import trio

from lumiku.errors import DatabaseError, Unavailable
from tests.contract.conftest import CONTRACT_MIGRATIONS, Q
from tests.services import open_test_store


async def test_cancelling_a_statement_in_flight_rolls_back(
    postgres_url: str, tmp_path: Path
) -> None:
    async with open_test_store(postgres_url, tmp_path, migrations=CONTRACT_MIGRATIONS) as store:
        await store.migrate()
        await store.execute(Q.seed_counter, 1, 5)
        blocked = trio.CancelScope()

        async def wait_for_the_row_lock() -> None:
            with blocked:
                async with store.transaction() as tx:
                    await tx.execute(Q.seed_counter, 2, 1)
                    await tx.execute(Q.set_counter, 1, 0)  # blocks on the holder's row lock

        with trio.fail_after(10):
            async with store.transaction() as holder:
                await holder.execute(Q.set_counter, 1, 4)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(wait_for_the_row_lock)
                    while not await store.fetch_val(Q.sessions_waiting_on_locks):
                        pass  # each turn is a real round trip to the server
                    blocked.cancel()
            assert blocked.cancelled_caught
            assert await store.fetch_val(Q.counter_value, 1) == 4
            assert await store.fetch_val(Q.counter_value, 2) is None
            # Every pooled connection is usable again.
            async with trio.open_nursery() as nursery:
                for _ in range(20):
                    nursery.start_soon(store.ping)


async def _proxy(port: int, scope: trio.CancelScope, *, task_status: trio.TaskStatus[int]) -> None:
    """Forward a local port to 127.0.0.1:`port` until `scope` is cancelled."""

    async def pump(source: trio.SocketStream, sink: trio.SocketStream) -> None:
        async for chunk in source:
            await sink.send_all(chunk)

    async def handle(client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", port)
        async with client, server, trio.open_nursery() as nursery:
            nursery.start_soon(pump, client, server)
            nursery.start_soon(pump, server, client)

    with scope:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handle, listeners)
            task_status.started(listeners[0].socket.getsockname()[1])


async def test_ping_is_unavailable_once_the_server_is_gone(
    postgres_url: str, tmp_path: Path
) -> None:
    parts = urlsplit(postgres_url)
    proxy = trio.CancelScope()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(_proxy, parts.port or 5432, proxy)
            proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}"))
            async with open_test_store(proxied, tmp_path) as store:
                await store.ping()
                proxy.cancel()
                await trio.testing.wait_all_tasks_blocked()
                with pytest.raises(Unavailable):
                    await store.ping()
                with pytest.raises(Unavailable):
                    async with store.transaction() as tx:
                        await tx.fetch_val(Q.count_users)


async def test_pool_size_and_statement_timeout_come_from_settings(
    postgres_url: str, tmp_path: Path
) -> None:
    async with open_test_store(
        postgres_url,
        tmp_path,
        migrations=CONTRACT_MIGRATIONS,
        database_pool_max_size=2,
        database_statement_timeout_s=1.5,
    ) as store:
        await store.migrate()
        assert await store.fetch_val(Q.statement_timeout) == "1500ms"
        pids: set[int] = set()

        async def work() -> None:
            async with store.transaction() as tx:
                pids.add(await tx.fetch_val(Q.backend_pid))

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                for _ in range(10):
                    nursery.start_soon(work)
        assert 1 <= len(pids) <= 2


async def test_the_password_never_reaches_descriptions_or_errors(
    postgres_url: str, tmp_path: Path
) -> None:
    parts = urlsplit(postgres_url)
    password = "sw0rdfish-Secret"
    with_password = urlunsplit(
        parts._replace(netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port or 5432}")
    )
    # The test server trusts local connections, so the password is accepted and unused.
    async with open_test_store(with_password, tmp_path) as store:
        assert password not in store.description
        assert "***" in store.description
        with pytest.raises(DatabaseError) as raised:
            await store.fetch_val(Q.as_integer, password)
        assert password not in str(raised.value)
        assert "***" in str(raised.value)


async def test_the_command_bound_cuts_a_slow_statement_and_spares_migration_scripts(
    postgres_url: str, tmp_path: Path
) -> None:
    """A statement past `database.command_timeout_s` is Unavailable (its connection is
    terminated, the pool serves on); a migration script gets `statement_timeout_s` more."""
    async with open_test_store(
        postgres_url,
        tmp_path,
        migrations=CONTRACT_MIGRATIONS,
        database_command_timeout_s=0.3,
        database_pool_max_size=1,
    ) as store:
        await store.migrate()
        with trio.fail_after(5):
            with pytest.raises(Unavailable, match=r"no answer within 0\.3 s"):
                await store.fetch_val(Q.sleep, 1.0)
            assert await store.fetch_val(Q.backend_pid) > 0  # the one connection, anew
            async with store.transaction() as tx:
                await tx.execute_script("SELECT pg_sleep(0.5);")
