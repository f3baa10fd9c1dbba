"""Both backends' migrations must build equivalent schemas (DESIGN §Persistence)."""

from __future__ import annotations

from pathlib import Path

from lumiku.db.migrate import MigrationSource
from tests.contract.conftest import CONTRACT_MIGRATIONS, HERE
from tests.contract.schema import Table, differences, introspect
from tests.services import open_test_store


async def _schemas(
    sqlite_url: str, postgres_url: str, tmp_path: Path, migrations: tuple[MigrationSource, ...]
) -> tuple[dict[str, Table], dict[str, Table]]:
    schemas = []
    for url in (sqlite_url, postgres_url):
        async with open_test_store(url, tmp_path, migrations=migrations) as store:
            await store.migrate()
            schemas.append(await introspect(store))
    return schemas[0], schemas[1]


async def test_real_migrations_build_equivalent_schemas(
    sqlite_url: str, postgres_url: str, tmp_path: Path
) -> None:
    sqlite, postgres = await _schemas(sqlite_url, postgres_url, tmp_path, ("lumiku.db",))
    assert {"schema_migrations", "users"} <= set(sqlite)
    assert differences(sqlite, postgres) == []


async def test_contract_tables_are_equivalent_too(
    sqlite_url: str, postgres_url: str, tmp_path: Path
) -> None:
    sqlite, postgres = await _schemas(sqlite_url, postgres_url, tmp_path, CONTRACT_MIGRATIONS)
    assert {"counters", "samples", "entries"} <= set(sqlite)
    assert differences(sqlite, postgres) == []


async def test_the_comparison_reports_every_kind_of_difference(
    sqlite_url: str, postgres_url: str, tmp_path: Path
) -> None:
    sqlite, postgres = await _schemas(
        sqlite_url, postgres_url, tmp_path, ("lumiku.db", HERE / "mismatch")
    )
    assert differences(sqlite, postgres) == [
        "mismatch.amount: family sqlite='text' postgres='int'",
        "mismatch.extra: only on sqlite",
        "mismatch.note: not_null sqlite=True postgres=False",
        "mismatch.seen_at: has_default sqlite=False postgres=True",
        "mismatch: uniques sqlite=[] postgres=[(('email',), False)]",
        "mismatch: foreign_keys sqlite=[] postgres=[(('owner',), 'users', ('id',), 'no action')]",
        "mismatch: checks sqlite=() postgres=('mismatch_kind_check',)",
    ]
