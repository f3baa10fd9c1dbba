"""Transactions on both backends: commit, rollback on error and on cancellation, isolation."""

from __future__ import annotations

import uuid

import pytest
import trio

from lumiku.db.store import Executor, Store
from lumiku.errors import DatabaseError, UniqueViolation
from tests.contract.conftest import Q


async def _add_user(db: Executor, email: str, user_id: uuid.UUID | None = None) -> uuid.UUID:
    user_id = user_id or uuid.uuid4()
    assert await db.execute(Q.insert_user, user_id, email, "hash", "user") == 1
    return user_id


async def test_a_transaction_commits_on_normal_exit(store: Store) -> None:
    async with store.transaction() as tx:
        user_id = await _add_user(tx, "a@example.com")
        assert await tx.fetch_val(Q.user_by_id, user_id) == user_id
    row = await store.fetch_one(Q.user_by_id, user_id)
    assert row is not None
    assert row["email"] == "a@example.com"


async def test_a_transaction_rolls_back_on_an_exception(store: Store) -> None:
    async def add_then_fail() -> None:
        async with store.transaction() as tx:
            await _add_user(tx, "a@example.com")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await add_then_fail()
    assert await store.fetch_val(Q.count_users) == 0


async def test_a_transaction_rolls_back_when_cancelled(store: Store) -> None:
    with trio.CancelScope() as scope:
        async with store.transaction() as tx:
            await _add_user(tx, "a@example.com")
            scope.cancel()
            await trio.lowlevel.checkpoint()
            pytest.fail("not cancelled")  # pragma: no cover
    assert scope.cancelled_caught
    assert await store.fetch_val(Q.count_users) == 0
    # The store is still usable, and writes again.
    async with store.transaction() as tx:
        await _add_user(tx, "b@example.com")
    assert await store.fetch_val(Q.count_users) == 1


async def test_a_cancellation_pending_at_commit_rolls_back_and_leaks_nothing(
    store: Store,
) -> None:
    with trio.CancelScope() as scope:
        async with store.transaction() as tx:
            await _add_user(tx, "a@example.com")
            scope.cancel()  # no checkpoint follows: the commit is where it lands
    assert scope.cancelled_caught
    assert await store.fetch_val(Q.count_users) == 0
    async with store.transaction() as tx:
        await _add_user(tx, "b@example.com")
    assert await store.fetch_val(Q.count_users) == 1
    if store.backend == "postgres":
        assert await store.fetch_val(Q.sessions_idle_in_transaction) == 0


async def test_readers_see_only_committed_data_and_do_not_wait_for_writers(
    store: Store,
) -> None:
    await _add_user(store, "first@example.com")
    with trio.fail_after(5):
        async with store.transaction() as tx:
            await _add_user(tx, "second@example.com")
            assert await tx.fetch_val(Q.count_users) == 2
            # Outside the open write transaction: not blocked, and not seeing it.
            assert await store.fetch_val(Q.count_users) == 1
            assert [r["email"] for r in await store.fetch_all(Q.user_emails)] == [
                "first@example.com"
            ]
    assert await store.fetch_val(Q.count_users) == 2


async def test_an_error_aborts_the_transaction_on_both_backends(store: Store) -> None:
    async def swallow_an_error() -> None:
        async with store.transaction() as tx:
            await _add_user(tx, "a@example.com")
            with pytest.raises(UniqueViolation):
                await _add_user(tx, "a@example.com")
            with pytest.raises(DatabaseError, match="aborted"):
                await tx.fetch_val(Q.count_users)

    # Leaving the block normally after a swallowed error does not commit.
    with pytest.raises(DatabaseError, match="aborted"):
        await swallow_an_error()
    assert await store.fetch_val(Q.count_users) == 0


async def test_a_finished_transaction_cannot_be_used(store: Store) -> None:
    async with store.transaction() as tx:
        pass
    with pytest.raises(DatabaseError, match="finished"):
        await tx.fetch_val(Q.count_users)


async def test_execute_returns_the_affected_row_count(store: Store) -> None:
    for number in range(3):
        await _add_user(store, f"{number}@example.com")
    assert await store.execute(Q.rename_users, "renamed") == 3
    async with store.transaction() as tx:
        assert await tx.execute(Q.rename_users, "again") == 3
    assert await store.fetch_val(Q.count_users) == 3
    assert await store.fetch_one(Q.user_by_id, uuid.uuid4()) is None
    assert await store.fetch_val(Q.user_by_id, uuid.uuid4()) is None
    assert await store.fetch_all(Q.user_by_id, uuid.uuid4()) == []
