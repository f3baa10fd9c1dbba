"""The Idempotency-Key protocol (`jobs/idempotency.py`) on both backends, without a job: what
a multipart route (Avatar Creator's upload) uses, the same rows `submit` uses."""

from __future__ import annotations

import pytest

from lumiku.db.store import Store
from lumiku.errors import IdempotencyKeyInUse, IdempotencyKeyReused
from lumiku.jobs import idempotency
from lumiku.jobs.idempotency import KeyRecord
from tests.contract.test_ledger import new_user


async def test_reserve_finish_replay_reuse_and_drop(store: Store) -> None:
    user = await new_user(store, balance=0)
    assert await idempotency.reserve(store, user, "k", "h1") is None
    with pytest.raises(IdempotencyKeyInUse):
        await idempotency.reserve(store, user, "k", "h1")  # the first is still processing
    with pytest.raises(IdempotencyKeyReused):
        await idempotency.reserve(store, user, "k", "h2")
    async with store.transaction() as tx:
        assert await idempotency.finish(tx, user, "k", "h1", response={"avatar_id": "a"})
    record = await idempotency.reserve(store, user, "k", "h1")
    assert record == KeyRecord(job_id=None, response={"avatar_id": "a"})
    async with store.transaction() as tx:  # done already: not this request's any more
        assert not await idempotency.finish(tx, user, "k", "h1", response={})

    assert await idempotency.reserve(store, user, "other", "h1") is None
    await idempotency.drop(store, user, "other", "h1")
    assert await idempotency.reserve(store, user, "other", "h3") is None  # free again
