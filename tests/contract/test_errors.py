"""Errors are translated to the same `lumiku.errors` classes and names on both backends."""

from __future__ import annotations

import contextlib
import socket
import uuid
from pathlib import Path

import pytest
import trio_asyncio

from lumiku.db.queries import Query
from lumiku.db.store import Store, open_store
from lumiku.errors import (
    CheckViolation,
    DatabaseError,
    IntegrityViolation,
    Unavailable,
    UniqueViolation,
)
from tests.contract.conftest import Q
from tests.services import BACKENDS, open_test_store, settings_for

NO_SUCH_TABLE = Query("no_such_table", "SELECT * FROM no_such_table", "SELECT * FROM no_such_table")


async def _user(
    store: Store, email: str, role: str = "user", user_id: uuid.UUID | None = None
) -> None:
    await store.execute(Q.insert_user, user_id or uuid.uuid4(), email, "hash", role)


async def test_unique_violations_name_the_constraint(store: Store) -> None:
    user_id = uuid.uuid4()
    await _user(store, "a@example.com", user_id=user_id)
    with pytest.raises(UniqueViolation) as raised:
        await _user(store, "a@example.com")
    assert raised.value.constraint == "users_email_key"
    with pytest.raises(UniqueViolation) as raised:
        await _user(store, "b@example.com", user_id=user_id)
    assert raised.value.constraint == "users_pkey"


async def test_a_partial_unique_index_is_named_by_the_index(contract_store: Store) -> None:
    user_id = uuid.uuid4()
    await _user(contract_store, "a@example.com", user_id=user_id)
    await contract_store.execute(Q.insert_entry, 1, user_id, "charge", "job-1")
    # Rows outside the index's WHERE do not collide.
    await contract_store.execute(Q.insert_entry, 2, user_id, "charge", None)
    await contract_store.execute(Q.insert_entry, 3, user_id, "charge", None)
    with pytest.raises(UniqueViolation) as raised:
        await contract_store.execute(Q.insert_entry, 4, user_id, "charge", "job-1")
    assert raised.value.constraint == "entries_kind_ref_key"


async def test_check_and_not_null_violations(contract_store: Store) -> None:
    with pytest.raises(CheckViolation) as raised:
        await _user(contract_store, "a@example.com", role="root")
    assert raised.value.constraint == "users_role_check"
    with pytest.raises(CheckViolation) as raised:
        await contract_store.execute(Q.insert_user_without_hash, uuid.uuid4(), "b@example.com")
    assert raised.value.constraint == "users_password_hash_not_null"
    await contract_store.execute(Q.seed_counter, 1, 0)
    with pytest.raises(CheckViolation) as raised:
        await contract_store.execute(Q.set_counter, 1, -1)
    assert raised.value.constraint == "counters_n_check"
    assert await contract_store.fetch_val(Q.count_users) == 0


async def test_foreign_keys_are_enforced(contract_store: Store) -> None:
    with pytest.raises(IntegrityViolation) as raised:
        await contract_store.execute(Q.insert_entry, 1, uuid.uuid4(), "charge", None)
    assert not isinstance(raised.value, UniqueViolation | CheckViolation)


async def test_other_errors_are_database_errors(store: Store) -> None:
    with pytest.raises(DatabaseError) as raised:
        await store.fetch_all(NO_SUCH_TABLE)
    assert not isinstance(raised.value, IntegrityViolation | Unavailable)
    assert "no_such_table" in str(raised.value)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("backend", BACKENDS)
async def test_an_unreachable_database_is_unavailable(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        url = f"postgresql://lumiku:pa55-word-xyz@127.0.0.1:{_closed_port()}/lumiku"
    else:
        (tmp_path / "a-file").write_text("not a directory")
        url = f"sqlite:///{tmp_path}/a-file/test.db"
    with pytest.raises(Unavailable) as raised:
        async with open_test_store(url, tmp_path, database_connect_timeout_s=2):
            pass  # pragma: no cover
    assert "pa55-word-xyz" not in str(raised.value)


async def test_a_closed_store_is_unavailable(database_url: str, tmp_path: Path) -> None:
    async with contextlib.AsyncExitStack() as stack:
        if database_url.startswith("postgres"):
            await stack.enter_async_context(trio_asyncio.open_loop())
        async with open_store(settings_for(database_url, tmp_path)) as store:
            await store.ping()
        with pytest.raises(Unavailable):
            await store.ping()
        with pytest.raises(Unavailable):
            async with store.transaction() as tx:
                await tx.fetch_val(Q.count_users)


async def test_a_file_that_is_not_a_database_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "junk.db").write_bytes(b"this is not an SQLite database file" * 100)
    with pytest.raises(Unavailable):
        async with open_test_store(f"sqlite:///{tmp_path}/junk.db", tmp_path) as store:
            await store.ping()
