"""`Store.unit`: a transaction run as one unit of work (one bridge crossing on PostgreSQL),
on both backends: committed on return, rolled back on an error or a cancellation, errors
mapped as everywhere else, notifications sent on commit only."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from lumiku.db.store import Store, Tx
from lumiku.errors import UniqueViolation
from tests.contract.conftest import CONTRACT_MIGRATIONS, Q
from tests.services import open_test_store


async def test_a_unit_commits_what_it_wrote_and_returns_its_result(contract_store: Store) -> None:
    async def work(tx: Tx, counter: int, start: int) -> int:
        await tx.execute(Q.seed_counter, counter, start)
        await tx.execute(Q.decrement_counter, counter)
        value: int = await tx.fetch_val(Q.counter_value, counter)
        return value

    assert await contract_store.unit(work, 1, 5) == 4
    assert await contract_store.fetch_val(Q.counter_value, 1) == 4


async def test_an_error_inside_a_unit_is_mapped_and_rolls_everything_back(
    contract_store: Store,
) -> None:
    await contract_store.execute(Q.seed_counter, 1, 5)
    seen: list[str] = []

    async def work(tx: Tx) -> None:
        await tx.execute(Q.set_counter, 1, 0)
        try:
            await tx.execute(Q.seed_counter, 1, 9)  # the same primary key
        except UniqueViolation as exc:  # mapped inside the unit, as a domain function sees it
            seen.append(type(exc).__name__)
            raise

    with pytest.raises(UniqueViolation):
        await contract_store.unit(work)
    assert seen == ["UniqueViolation"]
    assert await contract_store.fetch_val(Q.counter_value, 1) == 5  # set_counter undone


async def test_a_domain_error_leaves_the_unit_as_it_was_raised(contract_store: Store) -> None:
    class Refused(Exception):
        pass

    async def work(tx: Tx) -> None:
        await tx.execute(Q.seed_counter, 2, 1)
        raise Refused("no")

    with pytest.raises(Refused):
        await contract_store.unit(work)
    assert await contract_store.fetch_val(Q.counter_value, 2) is None


async def test_a_cancelled_unit_rolls_back(postgres_url: str, tmp_path: Path) -> None:
    async with open_test_store(postgres_url, tmp_path, migrations=CONTRACT_MIGRATIONS) as store:
        await store.migrate()

        async def work(tx: Tx) -> None:
            await tx.execute(Q.seed_counter, 3, 1)
            await tx.fetch_val(Q.sleep, 30)

        with trio.move_on_after(0.5) as waited:
            await store.unit(work)
        assert waited.cancelled_caught
        assert await store.fetch_val(Q.counter_value, 3) is None
        assert await store.fetch_val(Q.sessions_idle_in_transaction) == 0


async def test_a_units_notification_is_sent_when_it_commits(
    postgres_url: str, tmp_path: Path
) -> None:
    async with (
        open_test_store(postgres_url, tmp_path) as store,
        store.listen("lumiku_unit_test") as listener,
    ):

        async def work(tx: Tx, payload: str) -> None:
            await tx.notify("lumiku_unit_test", payload)

        await store.unit(work, "hello")
        with trio.fail_after(5):
            assert await listener.receive() == "hello"


async def test_execute_many_runs_a_statement_per_row_on_the_store_and_in_a_unit(
    contract_store: Store,
) -> None:
    await contract_store.execute_many(Q.seed_counter, [(1, 10), (2, 20)])
    await contract_store.execute_many(Q.seed_counter, [])  # nothing to do

    async def work(tx: Tx) -> None:
        await tx.execute_many(Q.set_counter, [(1, 11), (2, 21), (3, 99)])  # 3: no such row

    await contract_store.unit(work)
    assert [await contract_store.fetch_val(Q.counter_value, n) for n in (1, 2, 3)] == [
        11,
        21,
        None,
    ]

    async def failing(tx: Tx) -> None:
        await tx.execute_many(Q.set_counter, [(1, 0)])
        await tx.execute_many(Q.seed_counter, [(4, 1), (2, 5)])  # 2 exists: rolled back

    with pytest.raises(UniqueViolation):
        await contract_store.unit(failing)
    assert await contract_store.fetch_val(Q.counter_value, 1) == 11
    assert await contract_store.fetch_val(Q.counter_value, 4) is None
