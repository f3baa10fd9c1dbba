"""Fixtures of the Store contract suite: every test here runs on SQLite AND PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

import pytest

from lumiku.db.queries import load_queries
from lumiku.db.store import Store
from tests.services import open_test_store

HERE: Final = Path(__file__).parent
# The real migrations plus the contract tables (9001_contract_tables).
CONTRACT_MIGRATIONS: Final = ("lumiku.db", "tests.contract")
Q: Final = load_queries("tests.contract")


@pytest.fixture
async def contract_store(database_url: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated Store that also has the contract tables (counters, samples, entries)."""
    async with open_test_store(database_url, tmp_path, migrations=CONTRACT_MIGRATIONS) as store:
        await store.migrate()
        yield store
