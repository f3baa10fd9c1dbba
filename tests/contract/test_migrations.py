"""The migrator on both backends: apply, idempotence, dry run, failure, refusal, races."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import trio

from lumiku.db.migrate import load_migrations
from lumiku.db.store import Store
from lumiku.errors import DatabaseError, SchemaMismatch
from tests.contract.conftest import CONTRACT_MIGRATIONS, HERE, Q
from tests.services import open_test_store

FAILING = ("lumiku.db", HERE / "failing")


def _real(store: Store) -> tuple[str, ...]:
    return tuple(m.name for m in load_migrations(store.backend))


async def test_a_fresh_database_is_migrated_once(empty_database_url: str, tmp_path: Path) -> None:
    async with open_test_store(empty_database_url, tmp_path) as store:
        real = _real(store)
        before = await store.schema_status()
        assert (before.applied, before.pending, before.version) == ((), real, 0)
        assert not before.is_current
        # Reading the status creates nothing.
        assert not await store.fetch_val(Q.table_exists, "schema_migrations")

        started = datetime.now(UTC)
        assert await store.migrate() == real
        after = await store.schema_status()
        assert after.applied == after.available == real
        assert (after.pending, after.unknown, after.changed) == ((), (), ())
        assert after.is_current
        assert after.version == int(real[-1].split("_")[0])
        assert await store.fetch_val(Q.count_users) == 0

        rows = await store.fetch_all(Q.migration_rows)
        by_name = {m.name: m for m in load_migrations(store.backend)}
        assert [r["name"] for r in rows] == list(real)
        for row in rows:
            assert row["version"] == by_name[row["name"]].version
            assert row["checksum"] == by_name[row["name"]].checksum
            assert started - timedelta(seconds=1) <= row["applied_at"] <= datetime.now(UTC)

        assert await store.migrate() == ()
        assert await store.schema_status() == after


async def test_a_dry_run_applies_nothing(empty_database_url: str, tmp_path: Path) -> None:
    async with open_test_store(empty_database_url, tmp_path) as store:
        assert await store.migrate(dry_run=True) == _real(store)
        assert (await store.schema_status()).applied == ()
        assert not await store.fetch_val(Q.table_exists, "schema_migrations")
        assert not await store.fetch_val(Q.table_exists, "users")


async def test_a_dry_run_lists_only_what_is_pending(database_url: str, tmp_path: Path) -> None:
    async with open_test_store(database_url, tmp_path) as store:
        await store.migrate()
    async with open_test_store(database_url, tmp_path, migrations=CONTRACT_MIGRATIONS) as store:
        assert await store.migrate(dry_run=True) == ("9001_contract_tables",)
        assert not await store.fetch_val(Q.table_exists, "counters")
        assert await store.migrate() == ("9001_contract_tables",)
    # 9001 is unknown to this set: even a dry run refuses.
    async with open_test_store(database_url, tmp_path, migrations=FAILING) as store:
        with pytest.raises(SchemaMismatch):
            await store.migrate(dry_run=True)


async def test_a_failing_migration_rolls_back_completely(database_url: str, tmp_path: Path) -> None:
    async with open_test_store(database_url, tmp_path, migrations=FAILING) as store:
        with pytest.raises(DatabaseError) as raised:
            await store.migrate()
        assert not isinstance(raised.value, SchemaMismatch)
        status = await store.schema_status()
        # The migration before it stays applied; the failing one left no trace.
        assert status.applied == (*_real(store), "9101_good")
        assert status.pending == ("9102_broken",)
        assert await store.fetch_val(Q.table_exists, "good_table")
        assert not await store.fetch_val(Q.table_exists, "half_done")


async def test_a_schema_ahead_of_this_build_is_never_touched(
    database_url: str, tmp_path: Path
) -> None:
    async with open_test_store(database_url, tmp_path, migrations=CONTRACT_MIGRATIONS) as store:
        await store.migrate()
    # This build knows 9101/9102 but not the applied 9001_contract_tables.
    async with open_test_store(database_url, tmp_path, migrations=FAILING) as store:
        status = await store.schema_status()
        assert status.unknown == ("9001_contract_tables",)
        assert status.pending == ("9101_good", "9102_broken")
        assert not status.is_current
        with pytest.raises(SchemaMismatch, match="9001_contract_tables"):
            await store.migrate()
        assert await store.schema_status() == status
        assert not await store.fetch_val(Q.table_exists, "good_table")


async def test_a_changed_applied_migration_is_refused(store: Store) -> None:
    first = _real(store)[0]
    assert await store.execute(Q.tamper_checksum, first) == 1
    status = await store.schema_status()
    assert status.changed == (first,)
    assert not status.is_current
    with pytest.raises(SchemaMismatch, match=first):
        await store.migrate()


async def test_a_migration_numbered_below_the_applied_ones_is_refused(
    database_url: str, tmp_path: Path
) -> None:
    for backend in ("postgres", "sqlite"):
        (tmp_path / "late" / backend).mkdir(parents=True)
        (tmp_path / "late" / backend / "5000_late.sql").write_text("CREATE TABLE late (id int);")
    async with open_test_store(database_url, tmp_path, migrations=CONTRACT_MIGRATIONS) as store:
        await store.migrate()
    late = (*CONTRACT_MIGRATIONS, tmp_path / "late")
    async with open_test_store(database_url, tmp_path, migrations=late) as store:
        assert (await store.schema_status()).pending == ("5000_late",)
        with pytest.raises(SchemaMismatch, match="5000_late"):
            await store.migrate()
        assert not await store.fetch_val(Q.table_exists, "late")


async def test_two_instances_migrating_together_apply_each_migration_once(
    empty_database_url: str, tmp_path: Path
) -> None:
    results: list[tuple[str, ...]] = []

    async def instance(number: int) -> None:
        async with open_test_store(
            empty_database_url, tmp_path / str(number), migrations=CONTRACT_MIGRATIONS
        ) as store:
            results.append(await store.migrate())

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for number in range(2):
                nursery.start_soon(instance, number)
    applied = sorted(name for result in results for name in result)
    async with open_test_store(
        empty_database_url, tmp_path, migrations=CONTRACT_MIGRATIONS
    ) as store:
        status = await store.schema_status()
    assert status.is_current
    assert applied == sorted(status.available)
