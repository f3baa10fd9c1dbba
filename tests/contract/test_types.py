"""Values cross the Store as the same Python types on both backends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from lumiku.db.store import Store
from lumiku.errors import DatabaseError
from tests.contract.conftest import Q

JAKARTA = timezone(timedelta(hours=7))


async def test_values_round_trip_with_the_same_types(contract_store: Store) -> None:
    sample_id = uuid.uuid4()
    at = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=JAKARTA)
    doc = {"name": "Zoë", "tags": ["a", "ß"], "nested": {"n": 1, "ok": False, "none": None}}
    big = 2**62 + 12345

    returned = await contract_store.fetch_one(Q.insert_sample, sample_id, "x", at, doc, True, big)
    fetched = await contract_store.fetch_one(Q.sample_by_id, sample_id)
    assert fetched == returned
    assert fetched is not None

    assert type(fetched["id"]) is uuid.UUID
    assert fetched["id"] == sample_id
    assert type(fetched["at"]) is datetime
    assert fetched["at"] == at
    assert fetched["at"].tzinfo is UTC
    assert fetched["at"].hour == 22  # 05:06 at +07:00 is 22:06 UTC the day before
    assert fetched["doc"] == doc
    assert fetched["flag"] is True
    assert type(fetched["big"]) is int
    assert fetched["big"] == big
    assert type(await contract_store.fetch_val(Q.sample_by_id, sample_id)) is uuid.UUID


async def test_nulls_lists_false_and_the_smallest_bigint(contract_store: Store) -> None:
    nulls_id, list_id = uuid.uuid4(), uuid.uuid4()
    await contract_store.execute(Q.insert_sample, nulls_id, None, None, None, None, None)
    row = await contract_store.fetch_one(Q.sample_by_id, nulls_id)
    assert row is not None
    assert [row[k] for k in ("label", "at", "doc", "flag", "big")] == [None] * 5

    doc = [1, "two", None, {"three": [3.5]}]
    await contract_store.execute(Q.insert_sample, list_id, "", None, doc, False, -(2**63))
    row = await contract_store.fetch_one(Q.sample_by_id, list_id)
    assert row is not None
    assert (row["label"], row["doc"], row["big"]) == ("", doc, -(2**63))
    assert row["flag"] is False


async def test_timestamps_compare_and_sort_by_instant(contract_store: Store) -> None:
    base = datetime(2025, 1, 1, 12, tzinfo=UTC)
    samples = {
        "second": base + timedelta(microseconds=1),
        "first": base,
        "fourth": (base + timedelta(seconds=1)).astimezone(JAKARTA),
        "third": base + timedelta(microseconds=999_999),
    }
    for label, at in samples.items():
        await contract_store.execute(Q.insert_sample, uuid.uuid4(), label, at, None, None, None)
    after_first = await contract_store.fetch_all(Q.sample_labels_after, base)
    assert [r["label"] for r in after_first] == ["second", "third", "fourth"]
    before_all = base - timedelta(microseconds=1)
    everything = await contract_store.fetch_all(Q.sample_labels_after, before_all)
    assert [r["label"] for r in everything] == ["first", "second", "third", "fourth"]


async def test_database_defaults_are_aware_utc_timestamps(store: Store) -> None:
    before = datetime.now(UTC)
    user_id = uuid.uuid4()
    await store.execute(Q.insert_user, user_id, "a@example.com", "hash", "admin")
    row = await store.fetch_one(Q.user_by_id, user_id)
    assert row is not None
    assert row["created_at"].tzinfo is UTC
    slack = timedelta(seconds=1)
    assert before - slack <= row["created_at"] <= datetime.now(UTC) + slack
    assert (row["tags"], row["token_version"], row["name"], row["role"]) == ([], 1, "", "admin")


async def test_naive_datetimes_are_refused(contract_store: Store) -> None:
    naive = datetime(2025, 1, 1, 12)
    with pytest.raises(DatabaseError, match="naive"):
        await contract_store.execute(Q.insert_sample, uuid.uuid4(), "x", naive, None, None, None)
    with pytest.raises(DatabaseError, match="naive"):
        async with contract_store.transaction() as tx:
            await tx.execute(Q.insert_sample, uuid.uuid4(), "x", naive, None, None, None)


@pytest.mark.parametrize("value", [{"at": datetime(2025, 1, 1, tzinfo=UTC)}, 2**64])
async def test_values_that_cannot_be_stored_are_database_errors(
    contract_store: Store, value: object
) -> None:
    doc, big = (value, None) if isinstance(value, dict) else (None, value)
    with pytest.raises(DatabaseError):
        await contract_store.execute(Q.insert_sample, uuid.uuid4(), "x", None, doc, None, big)


async def test_parameters_inside_literals_are_left_alone(store: Store) -> None:
    row = await store.fetch_one(Q.literal_with_dollar, "value")
    assert row == {"text": "$1 and '$2'", "value": "value"}
