"""Real concurrency on both backends: no lost updates, separate connections on PostgreSQL."""

from __future__ import annotations

import trio

from lumiku.db.store import Store
from tests.contract.conftest import Q

TASKS = 50
STOCK = 20


async def test_concurrent_conditional_decrements_never_overdraw(contract_store: Store) -> None:
    await contract_store.execute(Q.seed_counter, 1, STOCK)
    wins: list[int] = []
    pids: set[int] = set()

    async def take(number: int) -> None:
        async with contract_store.transaction() as tx:
            pids.add(await tx.fetch_val(Q.backend_pid))
            if await tx.execute(Q.decrement_counter, 1) == 1:
                wins.append(number)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for number in range(TASKS):
                nursery.start_soon(take, number)

    assert len(wins) == STOCK
    assert await contract_store.fetch_val(Q.counter_value, 1) == 0
    if contract_store.backend == "postgres":
        assert len(pids) > 1, "transactions should run on several pooled connections"


async def test_read_then_write_in_a_transaction_loses_no_update(contract_store: Store) -> None:
    await contract_store.execute(Q.seed_counter, 1, STOCK)
    wins: list[int] = []

    async def take(number: int) -> None:
        async with contract_store.transaction() as tx:
            n = await tx.fetch_val(Q.counter_for_update, 1)
            if n >= 1:
                await tx.execute(Q.set_counter, 1, n - 1)
                wins.append(number)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for number in range(TASKS):
                nursery.start_soon(take, number)

    assert len(wins) == STOCK
    assert await contract_store.fetch_val(Q.counter_value, 1) == 0


async def test_concurrent_statements_outside_transactions(contract_store: Store) -> None:
    await contract_store.execute(Q.seed_counter, 1, STOCK)
    wins: list[int] = []

    async def take(number: int) -> None:
        if await contract_store.execute(Q.decrement_counter, 1) == 1:
            wins.append(number)
        assert 0 <= await contract_store.fetch_val(Q.counter_value, 1) <= STOCK

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for number in range(TASKS):
                nursery.start_soon(take, number)

    assert len(wins) == STOCK
    assert await contract_store.fetch_val(Q.counter_value, 1) == 0
