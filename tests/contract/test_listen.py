"""`Store.listen` and `Tx.notify`: PostgreSQL NOTIFY delivered on commit only, a lost
listening connection reported as `Unavailable`; on SQLite both are inert."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from lumiku.db.store import Store
from lumiku.errors import Unavailable
from tests.contract.conftest import CONTRACT_MIGRATIONS, Q
from tests.services import open_test_store

CHANNEL = "lumiku_test"


async def notify_then_fail(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.notify(CHANNEL, "rolled back")
        raise RuntimeError("abort")


async def test_a_notification_arrives_when_its_transaction_commits(
    postgres_url: str, tmp_path: Path
) -> None:
    async with (
        open_test_store(postgres_url, tmp_path) as store,
        store.listen(CHANNEL) as listener,
    ):
        with pytest.raises(RuntimeError, match="abort"):
            await notify_then_fail(store)
        async with store.transaction() as tx:
            await tx.notify(CHANNEL, "first")
            await tx.notify(CHANNEL, "second")
            with trio.move_on_after(0.2):
                early = await listener.receive()
                pytest.fail(f"received {early!r} before the commit")
        with trio.fail_after(5):
            received = [await listener.receive(), await listener.receive()]
        assert received == ["first", "second"]  # and nothing of the rolled-back one
        with trio.move_on_after(0.2):
            extra = await listener.receive()
            pytest.fail(f"received {extra!r} as well")
        await listener.ping()


async def test_each_listener_gets_every_notification(postgres_url: str, tmp_path: Path) -> None:
    async with (
        open_test_store(postgres_url, tmp_path) as store,
        store.listen(CHANNEL) as one,
        store.listen(CHANNEL) as two,
        store.listen("lumiku_other") as other,
    ):
        async with store.transaction() as tx:
            await tx.notify(CHANNEL, "hello")
        with trio.fail_after(5):
            assert [await one.receive(), await two.receive()] == ["hello", "hello"]
        with trio.move_on_after(0.2):
            pytest.fail(f"another channel received {await other.receive()!r}")


async def test_a_lost_listening_connection_is_unavailable(
    postgres_url: str, tmp_path: Path
) -> None:
    async with (
        open_test_store(postgres_url, tmp_path, migrations=CONTRACT_MIGRATIONS) as store,
        store.listen(CHANNEL) as listener,
    ):
        assert await store.fetch_val(Q.terminate_listeners) == 1
        with trio.fail_after(5), pytest.raises(Unavailable):
            await listener.receive()
        with pytest.raises(Unavailable):
            await listener.ping()


async def test_sqlite_notify_is_a_no_op_and_its_listener_never_receives(
    sqlite_url: str, tmp_path: Path
) -> None:
    async with open_test_store(sqlite_url, tmp_path) as store, store.listen(CHANNEL) as listener:
        async with store.transaction() as tx:
            await tx.notify(CHANNEL, "nobody else shares this database")
        await listener.ping()
        with trio.move_on_after(0.2) as waited:
            await listener.receive()
        assert waited.cancelled_caught
