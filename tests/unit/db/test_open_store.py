"""`open_store` choices that need no server: SQLite specifics and refused URLs."""

from __future__ import annotations

import uuid
from pathlib import Path

import attrs
import pytest

from lumiku.db.queries import Query
from lumiku.db.store import open_store
from lumiku.errors import ConfigError
from tests.services import open_test_store, settings_for

JOURNAL_MODE = Query("journal_mode", "SHOW wal_level", "PRAGMA journal_mode")
FOREIGN_KEYS = Query("foreign_keys", "SELECT 1", "PRAGMA foreign_keys")
INSERT_USER = Query(
    "insert_user",
    "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'h')",
    "INSERT INTO users (id, email, password_hash) VALUES (?1, ?2, 'h')",
)
EMAILS = Query("emails", "SELECT email FROM users", "SELECT email FROM users")


async def test_sqlite_creates_parent_directories_and_uses_wal(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/a/b/lumiku.db"
    async with open_test_store(url, tmp_path) as store:
        assert (store.backend, store.description) == ("sqlite", url)
        await store.migrate()
        assert await store.fetch_val(JOURNAL_MODE) == "wal"
        assert await store.fetch_val(FOREIGN_KEYS) == 1
    assert (tmp_path / "a" / "b" / "lumiku.db").is_file()


async def test_an_in_memory_database_works_on_one_connection(tmp_path: Path) -> None:
    async with open_test_store("sqlite:///:memory:", tmp_path) as store:
        await store.migrate()
        async with store.transaction() as tx:
            await tx.execute(INSERT_USER, uuid.uuid4(), "a@example.com")
        await store.execute(INSERT_USER, uuid.uuid4(), "b@example.com")
        rows = await store.fetch_all(EMAILS)
        assert sorted(r["email"] for r in rows) == ["a@example.com", "b@example.com"]
        assert (await store.schema_status()).is_current


async def test_an_unsupported_scheme_is_a_config_error(tmp_path: Path) -> None:
    settings = settings_for(f"sqlite:///{tmp_path}/x.db", tmp_path)
    settings = attrs.evolve(
        settings, database=attrs.evolve(settings.database, url="mysql://localhost/db")
    )
    with pytest.raises(ConfigError, match="unsupported database scheme 'mysql'"):
        async with open_store(settings):
            pass  # pragma: no cover


async def test_postgres_needs_the_trio_asyncio_loop(tmp_path: Path) -> None:
    settings = settings_for("postgresql://nobody@127.0.0.1:1/none", tmp_path)
    with pytest.raises(RuntimeError, match=r"trio_asyncio\.open_loop"):
        async with open_store(settings):
            pass  # pragma: no cover
