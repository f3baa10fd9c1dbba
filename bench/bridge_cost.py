"""What the trio-asyncio bridge costs: one small transaction (BEGIN, SELECT 1, NOTIFY,
COMMIT: four round trips, the shape of a Lumiku unit of work) run by asyncpg on plain
asyncio, then the same coroutine called from trio through `trio_asyncio.aio_as_trio` (one
crossing per transaction, as `Store.unit` does). Prints wall and CPU time per transaction
and their ratio.

Usage: .venv/bin/python bench/bridge_cost.py [DATABASE_URL] [--transactions 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg
import trio
import trio_asyncio

WARM_UP = 50


async def one_transaction(pool: Any) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchval("SELECT 1")
        await conn.execute("SELECT pg_notify('lumiku_bench', 'wake')")


def per_transaction(started: tuple[float, float], count: int) -> tuple[float, float]:
    wall, cpu = started
    return (time.perf_counter() - wall) / count * 1e3, (time.process_time() - cpu) / count * 1e3


async def on_asyncio(url: str, count: int) -> tuple[float, float]:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    for _ in range(WARM_UP):
        await one_transaction(pool)
    started = time.perf_counter(), time.process_time()
    for _ in range(count):
        await one_transaction(pool)
    result = per_transaction(started, count)
    await pool.close()
    return result


async def on_trio(url: str, count: int) -> tuple[float, float]:
    async with trio_asyncio.open_loop():
        pool = await trio_asyncio.aio_as_trio(asyncpg.create_pool)(url, min_size=1, max_size=1)
        call = trio_asyncio.aio_as_trio(one_transaction)
        for _ in range(WARM_UP):
            await call(pool)
        started = time.perf_counter(), time.process_time()
        for _ in range(count):
            await call(pool)
        result = per_transaction(started, count)
        await trio_asyncio.aio_as_trio(pool.close)()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--transactions", type=int, default=1000)
    args = parser.parse_args()
    plain = asyncio.run(on_asyncio(args.url, args.transactions))
    bridged = trio.run(on_trio, args.url, args.transactions)
    print(f"asyncio:      {plain[0]:.3f} ms wall, {plain[1]:.3f} ms CPU per transaction")
    print(f"trio-asyncio: {bridged[0]:.3f} ms wall, {bridged[1]:.3f} ms CPU per transaction")
    print(
        f"ratio trio-asyncio / asyncio: wall {bridged[0] / plain[0]:.2f}, CPU "
        f"{bridged[1] / plain[1]:.2f}"
    )


if __name__ == "__main__":
    main()
