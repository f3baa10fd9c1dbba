"""Payments on both backends: a success callback credits exactly once however often and
however concurrently it arrives, contradicting callbacks move nothing, expiry, and the
reconcile checks that find a missing or a duplicated purchase entry."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

import trio

from lumiku.credits import ledger
from lumiku.credits.reconcile import LEDGER_CHECKS, reconcile
from lumiku.db.queries import load_queries
from lumiku.db.store import Store
from lumiku.payments import service
from lumiku.payments.checks import PAYMENT_CHECKS
from lumiku.payments.duitku import Callback
from lumiku.payments.service import Q
from tests.contract.test_ledger import new_user

PQ: Final = load_queries("tests.contract", "payments_queries.sql")
CHECKS: Final = (*LEDGER_CHECKS, *PAYMENT_CHECKS)
CREDITS, AMOUNT = 500, 65_000


async def new_payment(store: Store, user_id: uuid.UUID, *, expires_in_s: float = 3600) -> str:
    now = datetime.now(UTC)
    order_id = service.new_order_id(now)
    await store.execute(
        Q.insert_payment,
        uuid.uuid4(),
        user_id,
        order_id,
        "creator",
        CREDITS,
        AMOUNT,
        "VC",
        "req-1",
        now,
        now + timedelta(seconds=expires_in_s),
    )
    return order_id


def paid(order_id: str, result_code: str = "00") -> Callback:
    return Callback("D1", str(AMOUNT), order_id, result_code, "sig", "DSREF")


async def status_of(store: Store, order_id: str) -> str:
    row = await store.fetch_one(Q.payment_by_order, order_id)
    assert row is not None
    return str(row["status"])


async def test_concurrent_success_callbacks_credit_once(store: Store) -> None:
    user = await new_user(store, balance=100)
    order_id = await new_payment(store, user)
    outcomes: list[str | None] = []

    async def settle() -> None:
        outcomes.append(await service._credit(store, paid(order_id)))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(settle)
    assert sorted(outcomes, key=str) == ["already_credited"] * 9 + ["credited"]
    assert await ledger.balance(store, user) == 100 + CREDITS
    entries = await store.fetch_all(PQ.purchase_entries)
    assert [(e["user_id"], e["delta"], e["ref_id"]) for e in entries] == [(user, CREDITS, order_id)]
    assert await status_of(store, order_id) == "success"
    assert (await reconcile(store, checks=CHECKS)).ok


async def test_a_failed_payment_is_never_credited_and_a_paid_one_never_failed(
    store: Store,
) -> None:
    user = await new_user(store, balance=100)
    failed, credited = await new_payment(store, user), await new_payment(store, user)
    assert await service._fail(store, paid(failed, "02")) == "failed"
    assert await service._fail(store, paid(failed, "02")) == "already_failed"
    assert await service._credit(store, paid(failed)) is None
    assert await status_of(store, failed) == "failed"
    assert await service._credit(store, paid(credited)) == "credited"
    assert await service._fail(store, paid(credited, "01")) is None
    assert await status_of(store, credited) == "success"
    assert await ledger.balance(store, user) == 100 + CREDITS


async def test_a_payment_failed_by_its_inquiry_is_still_credited_when_paid(
    store: Store,
) -> None:
    """A timed-out inquiry may have reached Duitku: money Duitku reports received is kept."""
    user = await new_user(store, balance=100)
    order_id = await new_payment(store, user)
    row = await store.fetch_one(Q.payment_by_order, order_id)
    assert row is not None
    await store.execute(Q.fail_created, row["id"], "Duitku did not answer", datetime.now(UTC))
    assert await status_of(store, order_id) == "failed"
    assert await service._credit(store, paid(order_id)) == "credited"
    assert await service._credit(store, paid(order_id)) == "already_credited"
    assert await ledger.balance(store, user) == 100 + CREDITS
    # Duitku's own failure verdict on such a payment is final.
    other = await new_payment(store, user)
    other_row = await store.fetch_one(Q.payment_by_order, other)
    assert other_row is not None
    await store.execute(Q.fail_created, other_row["id"], "HTTP 500", datetime.now(UTC))
    assert await service._fail(store, paid(other, "01")) == "failed"
    assert await service._credit(store, paid(other)) is None
    assert await ledger.balance(store, user) == 100 + CREDITS


async def test_expiry_marks_only_due_pending_payments(store: Store) -> None:
    user = await new_user(store)
    due = await new_payment(store, user, expires_in_s=-1)
    later = await new_payment(store, user, expires_in_s=3600)
    paid_due = await new_payment(store, user, expires_in_s=-1)
    assert await service._credit(store, paid(paid_due)) == "credited"
    assert await service.expire_due(store) == [due]
    assert [await status_of(store, o) for o in (due, later, paid_due)] == [
        "expired",
        "pending",
        "success",
    ]
    assert await service.expire_due(store) == []
    # Paid after all (Duitku is the authority): an expired payment still gets its credits.
    assert await service._credit(store, paid(due)) == "credited"
    assert await status_of(store, due) == "success"


async def test_reconcile_finds_a_deleted_purchase_entry(store: Store) -> None:
    user = await new_user(store, balance=100)
    order_id = await new_payment(store, user)
    await service._credit(store, paid(order_id))
    await store.execute(PQ.delete_purchase, order_id)
    report = await reconcile(store, checks=CHECKS)
    found = {(d.kind, d.expected, d.actual) for d in report.discrepancies}
    assert ("payment_purchase", CREDITS, 0) in found
    assert any(d.kind == "balance_equals_entries" for d in report.discrepancies)


async def test_reconcile_finds_a_duplicated_purchase_entry(store: Store) -> None:
    user = await new_user(store, balance=100)
    order_id = await new_payment(store, user)
    await service._credit(store, paid(order_id))
    await store.execute(PQ.drop_ref_index)  # what the UNIQUE index exists to prevent
    await store.execute(PQ.duplicate_purchase, order_id)
    report = await reconcile(store, checks=CHECKS)
    purchase = [d for d in report.discrepancies if d.kind == "payment_purchase"]
    assert [(d.user_id, d.expected, d.actual) for d in purchase] == [(user, CREDITS, 2 * CREDITS)]


async def test_reconcile_finds_a_purchase_without_a_successful_payment(store: Store) -> None:
    user = await new_user(store, balance=100)
    pending = await new_payment(store, user)
    async with store.transaction() as tx:
        await ledger.grant(
            tx, user_id=user, amount=CREDITS, kind="purchase", ref_type="payment", ref_id=pending
        )
    report = await reconcile(store, checks=CHECKS)
    assert [(d.kind, d.user_id, d.actual) for d in report.discrepancies] == [
        ("purchase_without_payment", user, CREDITS)
    ]


async def test_success_and_failure_callbacks_racing_settle_one_verdict(store: Store) -> None:
    """Duitku's "00" and "01" for one order arriving together: exactly one verdict wins, the
    losers move nothing, and the credit matches the final status."""
    user = await new_user(store, balance=100)
    orders = [await new_payment(store, user) for _ in range(4)]
    outcomes: dict[str, list[str | None]] = {order_id: [] for order_id in orders}

    async def settle(order_id: str, result_code: str) -> None:
        if result_code == "00":
            outcome = await service._credit(store, paid(order_id))
        else:
            outcome = await service._fail(store, paid(order_id, result_code))
        outcomes[order_id].append(outcome)

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for order_id in orders:
                for i in range(10):
                    nursery.start_soon(settle, order_id, "00" if i % 2 else "01")
    credited = 0
    for order_id, seen in outcomes.items():
        final = await status_of(store, order_id)
        if final == "success":
            assert sorted(seen, key=str) == sorted(
                ["already_credited"] * 4 + ["credited"] + [None] * 5, key=str
            )
            credited += CREDITS
        else:
            assert final == "failed"
            assert sorted(seen, key=str) == sorted(
                ["already_failed"] * 4 + ["failed"] + [None] * 5, key=str
            )
    assert await ledger.balance(store, user) == 100 + credited
    entries = await store.fetch_all(PQ.purchase_entries)
    assert len(entries) == credited // CREDITS
    assert (await reconcile(store, checks=CHECKS)).ok
