"""The credits ledger on both backends (SPEC §5): semantics, constraints, real concurrency."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Final
from uuid import UUID

import pytest
import trio

from lumiku.config import CreditsSettings
from lumiku.credits import ledger
from lumiku.credits.ledger import CreditsPolicy, Entry
from lumiku.db.queries import load_queries
from lumiku.db.store import Store
from lumiku.errors import (
    CheckViolation,
    DuplicateLedgerEntry,
    InsufficientCredits,
    ValidationFailed,
)

LQ: Final = load_queries("tests.contract", "ledger_queries.sql")


async def new_user(store: Store, balance: int = 0) -> UUID:
    """A user; with `balance` > 0 also an account granted that much."""
    user_id = uuid.uuid4()
    await store.execute(LQ.insert_user, user_id, f"{user_id.hex}@example.com")
    if balance:
        async with store.transaction() as tx:
            await ledger.grant(tx, user_id=user_id, amount=balance, kind="welcome")
    return user_id


async def entries_of(store: Store, user_id: UUID) -> list[Entry]:
    return [Entry.from_row(row) for row in await store.fetch_all(LQ.entries_of, user_id)]


async def assert_consistent(store: Store, user_id: UUID) -> int:
    """The balance, after checking it against its entries."""
    balance = await ledger.balance(store, user_id)
    entries = await entries_of(store, user_id)
    assert balance >= 0
    assert balance == sum(e.delta for e in entries)
    assert balance == (entries[-1].balance_after if entries else 0)
    return balance


async def test_grant_opens_the_account_and_writes_one_entry(store: Store) -> None:
    user = await new_user(store)
    assert await ledger.balance(store, user) == 0
    async with store.transaction() as tx:
        first = await ledger.grant(tx, user_id=user, amount=100, kind="welcome", note="hello")
        second = await ledger.grant(
            tx, user_id=user, amount=25, kind="purchase", ref_type="payment", ref_id="p-1"
        )
    assert (first.delta, first.balance_after, first.kind, first.note) == (
        100,
        100,
        "welcome",
        "hello",
    )
    assert (second.balance_after, second.ref_type, second.ref_id) == (125, "payment", "p-1")
    assert await entries_of(store, user) == [first, second]
    assert await assert_consistent(store, user) == 125


async def test_open_account_is_idempotent(store: Store) -> None:
    user = await new_user(store, balance=40)
    async with store.transaction() as tx:
        await ledger.open_account(tx, user)
        await ledger.open_account(tx, user)
    assert await ledger.balance(store, user) == 40
    other = await new_user(store)
    await ledger.open_account(store, other)
    assert await store.fetch_val(LQ.count_accounts) == 2
    assert await entries_of(store, other) == []


@pytest.mark.parametrize(
    ("kind", "amount"), [("charge", 5), ("refund", 5), ("bonus", 5), ("grant", 0), ("grant", -3)]
)
async def test_grant_refuses_bad_kinds_and_amounts(store: Store, kind: str, amount: int) -> None:
    user = await new_user(store)
    async with store.transaction() as tx:
        with pytest.raises(ValueError, match=r"kind|amount"):
            await ledger.grant(tx, user_id=user, amount=amount, kind=kind)
    assert await store.fetch_val(LQ.count_entries) == 0


async def test_duplicate_grant_reference_writes_nothing_and_keeps_the_transaction(
    store: Store,
) -> None:
    user = await new_user(store)
    async with store.transaction() as tx:
        await ledger.grant(
            tx, user_id=user, amount=50, kind="purchase", ref_type="payment", ref_id="p"
        )
    async with store.transaction() as tx:
        with pytest.raises(DuplicateLedgerEntry):
            await ledger.grant(
                tx, user_id=user, amount=50, kind="purchase", ref_type="payment", ref_id="p"
            )
        # The same transaction still works and commits.
        await ledger.grant(tx, user_id=user, amount=7, kind="grant", ref_type="payment", ref_id="p")
    assert [e.delta for e in await entries_of(store, user)] == [50, 7]
    assert await assert_consistent(store, user) == 57


async def test_charge_takes_the_amount_and_writes_a_negative_entry(store: Store) -> None:
    user = await new_user(store, balance=100)
    async with store.transaction() as tx:
        entry = await ledger.charge(tx, user_id=user, amount=30, ref_type="job", ref_id="j1")
    assert entry is not None
    assert (entry.kind, entry.delta, entry.balance_after) == ("charge", -30, 70)
    assert (await entries_of(store, user))[-1] == entry
    assert await assert_consistent(store, user) == 70


async def test_charging_nothing_writes_nothing(store: Store) -> None:
    user = await new_user(store, balance=10)
    async with store.transaction() as tx:
        assert await ledger.charge(tx, user_id=user, amount=0, ref_type="job", ref_id="j") is None
    assert len(await entries_of(store, user)) == 1
    assert await ledger.balance(store, user) == 10


async def test_insufficient_credits_leaves_nothing_behind(store: Store) -> None:
    user = await new_user(store, balance=25)
    bystander = await new_user(store)
    entries_before = await store.fetch_val(LQ.count_entries)

    async def submit() -> None:
        async with store.transaction() as tx:
            # The caller's own write in the same transaction (the job row, in real life).
            await ledger.grant(tx, user_id=bystander, amount=5)
            await ledger.charge(tx, user_id=user, amount=26, ref_type="job", ref_id="j")

    with pytest.raises(InsufficientCredits) as caught:
        await submit()
    assert caught.value.extra == {"required": 26, "available": 25}
    assert await store.fetch_val(LQ.count_entries) == entries_before
    assert await ledger.balance(store, user) == 25
    assert await ledger.balance(store, bystander) == 0
    assert await assert_consistent(store, user) == 25


async def test_charging_a_user_without_an_account_is_insufficient(store: Store) -> None:
    user = await new_user(store)
    with pytest.raises(InsufficientCredits) as caught:
        async with store.transaction() as tx:
            await ledger.charge(tx, user_id=user, amount=1, ref_type="job", ref_id="j")
    assert caught.value.extra == {"required": 1, "available": 0}
    assert await store.fetch_val(LQ.count_accounts) == 0


async def test_duplicate_charge_reference_rolls_everything_back(store: Store) -> None:
    user = await new_user(store, balance=100)
    async with store.transaction() as tx:
        await ledger.charge(tx, user_id=user, amount=10, ref_type="job", ref_id="j1")
    with pytest.raises(DuplicateLedgerEntry):
        async with store.transaction() as tx:
            await ledger.charge(tx, user_id=user, amount=10, ref_type="job", ref_id="j1")
    assert await assert_consistent(store, user) == 90
    assert len(await entries_of(store, user)) == 2


async def test_refund_is_written_once_per_reference(store: Store) -> None:
    user = await new_user(store, balance=100)
    async with store.transaction() as tx:
        await ledger.charge(tx, user_id=user, amount=40, ref_type="job", ref_id="j1")
        first = await ledger.refund(tx, user_id=user, amount=30, ref_type="job", ref_id="j1")
    async with store.transaction() as tx:
        again = await ledger.refund(tx, user_id=user, amount=30, ref_type="job", ref_id="j1")
        zero = await ledger.refund(tx, user_id=user, amount=0, ref_type="job", ref_id="j2")
    assert first is not None
    assert (first.kind, first.delta, first.balance_after) == ("refund", 30, 90)
    assert again is None
    assert zero is None
    assert await assert_consistent(store, user) == 90


async def test_refund_without_an_account_is_refused(store: Store) -> None:
    user = await new_user(store)
    with pytest.raises(LookupError):
        async with store.transaction() as tx:
            await ledger.refund(tx, user_id=user, amount=5, ref_type="job", ref_id="j")
    assert await store.fetch_val(LQ.count_entries) == 0


async def test_references_come_in_pairs(store: Store) -> None:
    user = await new_user(store, balance=10)
    async with store.transaction() as tx:
        with pytest.raises(ValueError, match="together"):
            await ledger.grant(tx, user_id=user, amount=1, ref_type="payment")
    assert await assert_consistent(store, user) == 10


def test_policy_frees_unlimited_users_on_unlimited_apps_only() -> None:
    policy = CreditsPolicy.from_settings(CreditsSettings(unlimited_apps=("avatar-creator",)))
    assert policy.unlimited_apps == frozenset({"avatar-creator"})
    assert policy.cost_for(["enterprise_unlimited"], "avatar-creator", 10) == 0
    assert policy.cost_for(("vip", "enterprise_unlimited"), "avatar-creator", 10) == 0
    assert policy.cost_for(["enterprise_unlimited"], "pose-generator", 30) == 30
    assert policy.cost_for([], "avatar-creator", 10) == 10
    assert policy.cost_for(["enterprise"], "avatar-creator", 8) == 8


async def test_history_pages_newest_first_with_a_cursor(store: Store) -> None:
    user = await new_user(store)
    other = await new_user(store, balance=1)
    async with store.transaction() as tx:
        for number in range(1, 26):
            await ledger.grant(tx, user_id=user, amount=number)
    pages, cursor = [], None
    while True:
        page = await ledger.history(store, user, limit=10, cursor=cursor)
        pages.append(page)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [len(p.entries) for p in pages] == [10, 10, 5]
    deltas = [e.delta for p in pages for e in p.entries]
    assert deltas == list(range(25, 0, -1))
    assert all(e.user_id == user for p in pages for e in p.entries)
    exact = await ledger.history(store, user, limit=25)
    assert len(exact.entries) == 25
    assert exact.next_cursor is None
    assert (await ledger.history(store, other)).entries[0].kind == "welcome"
    empty = await ledger.history(store, await new_user(store))
    assert (empty.entries, empty.next_cursor) == ((), None)


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90LWEtbnVtYmVy", "LTE", "MA", "é"])
async def test_history_refuses_a_foreign_cursor(store: Store, cursor: str) -> None:
    user = await new_user(store, balance=5)
    with pytest.raises(ValidationFailed) as caught:
        await ledger.history(store, user, cursor=cursor)
    assert [e.field for e in caught.value.errors] == ["cursor"]


@pytest.mark.parametrize("limit", [0, 101, -1])
async def test_history_limit_is_bounded(store: Store, limit: int) -> None:
    with pytest.raises(ValidationFailed) as caught:
        await ledger.history(store, uuid.uuid4(), limit=limit)
    assert [e.field for e in caught.value.errors] == ["limit"]


async def test_entries_and_pages_serialise_to_json(store: Store) -> None:
    user = await new_user(store, balance=3)
    page = await ledger.history(store, user)
    data = json.loads(json.dumps(page.as_dict()))
    entry = data["entries"][0]
    assert entry["user_id"] == str(user)
    assert entry["delta"] == 3
    assert datetime.fromisoformat(entry["created_at"]).tzinfo is not None
    assert abs(datetime.fromisoformat(entry["created_at"]) - datetime.now(UTC)).total_seconds() < 60
    assert data["next_cursor"] is None


async def test_the_balance_check_holds_against_raw_writes(store: Store) -> None:
    user = await new_user(store, balance=5)
    with pytest.raises(CheckViolation) as caught:
        await store.execute(LQ.set_balance, user, -1)
    assert caught.value.constraint == "credit_accounts_balance_check"
    with pytest.raises(CheckViolation):
        await store.execute(LQ.insert_raw_entry, user, 0, 5, "grant", None, None, datetime.now(UTC))
    with pytest.raises(CheckViolation):
        await store.execute(LQ.insert_raw_entry, user, 1, 6, "gift", None, None, datetime.now(UTC))
    assert await assert_consistent(store, user) == 5


async def test_concurrent_charges_never_overdraw(store: Store) -> None:
    user = await new_user(store, balance=500)
    won: list[Entry] = []
    refused: list[InsufficientCredits] = []

    async def pay(number: int) -> None:
        try:
            async with store.transaction() as tx:
                entry = await ledger.charge(
                    tx, user_id=user, amount=10, ref_type="job", ref_id=f"job-{number}"
                )
                assert entry is not None
                won.append(entry)
        except InsufficientCredits as exc:
            refused.append(exc)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for number in range(200):
                nursery.start_soon(pay, number)

    assert (len(won), len(refused)) == (50, 150)
    assert sorted(e.balance_after for e in won) == list(range(0, 500, 10))
    assert all(exc.extra["available"] < 10 for exc in refused)
    assert await assert_consistent(store, user) == 0


async def test_concurrent_refunds_of_one_reference_refund_once(store: Store) -> None:
    user = await new_user(store, balance=100)
    async with store.transaction() as tx:
        await ledger.charge(tx, user_id=user, amount=60, ref_type="job", ref_id="j")
    results: list[Entry | None] = []

    async def give_back() -> None:
        async with store.transaction() as tx:
            results.append(
                await ledger.refund(tx, user_id=user, amount=60, ref_type="job", ref_id="j")
            )

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(give_back)

    assert len(results) == 50
    assert len([r for r in results if r is not None]) == 1
    assert await store.fetch_val(LQ.entries_with_ref, "refund", "job", "j") == 1
    assert await assert_consistent(store, user) == 100
