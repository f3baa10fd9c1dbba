"""The ledger audit on both backends: it finds what raw writes broke, and changes nothing."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
import trio

from lumiku.credits import ledger
from lumiku.credits.reconcile import LEDGER_CHECKS, Check, Discrepancy, reconcile, serve_reconciler
from lumiku.db.store import Executor, Store
from lumiku.errors import Unavailable
from lumiku.observability import logging as logs
from tests.contract.test_ledger import LQ, new_user


async def busy_ledger(store: Store) -> list:
    """Two users with grants, charges and a refund; returns their ids."""
    users = [await new_user(store, balance=100), await new_user(store, balance=50)]
    async with store.transaction() as tx:
        await ledger.charge(tx, user_id=users[0], amount=30, ref_type="job", ref_id="j1")
        await ledger.refund(tx, user_id=users[0], amount=10, ref_type="job", ref_id="j1")
        await ledger.charge(tx, user_id=users[1], amount=50, ref_type="job", ref_id="j2")
    return users


async def test_a_clean_ledger_reconciles(store: Store) -> None:
    empty = await reconcile(store)
    assert (empty.ok, empty.accounts_checked, empty.entries_checked) == (True, 0, 0)
    await busy_ledger(store)
    report = await reconcile(store)
    assert report.ok
    assert (report.accounts_checked, report.entries_checked) == (2, 5)
    assert report.checks == tuple(c.name for c in LEDGER_CHECKS)
    assert json.loads(json.dumps(report.as_dict()))["discrepancies"] == []


async def test_a_balance_edited_behind_the_ledger_is_reported(store: Store) -> None:
    users = await busy_ledger(store)
    await store.execute(LQ.set_balance, users[0], 75)
    report = await reconcile(store)
    assert not report.ok
    assert sorted((d.kind, d.user_id, d.expected, d.actual) for d in report.discrepancies) == [
        ("balance_equals_entries", users[0], 80, 75),
        ("newest_entry_matches_balance", users[0], 80, 75),
    ]
    # Reporting changed nothing.
    assert await ledger.balance(store, users[0]) == 75
    assert (await reconcile(store)).discrepancies == report.discrepancies


async def test_an_entry_inserted_without_moving_the_balance_is_reported(store: Store) -> None:
    users = await busy_ledger(store)
    await store.execute(
        LQ.insert_raw_entry, users[1], -5, 0, "charge", "job", "orphan", datetime.now(UTC)
    )
    report = await reconcile(store)
    [found] = report.discrepancies
    assert found == Discrepancy(
        "balance_equals_entries",
        users[1],
        "balance 0 but its entries sum to -5",
        expected=-5,
        actual=0,
    )
    assert found.as_dict()["user_id"] == str(users[1])
    assert report.entries_checked == 6


async def test_entries_with_the_wrong_sign_are_reported(store: Store) -> None:
    users = await busy_ledger(store)
    now = datetime.now(UTC)
    # A +5 charge and a -5 refund: the sum and the newest balance_after still agree.
    await store.execute(LQ.insert_raw_entry, users[1], 5, 5, "charge", "job", "x", now)
    await store.execute(LQ.insert_raw_entry, users[1], -5, 0, "refund", "job", "x", now)
    report = await reconcile(store)
    assert sorted((d.kind, d.user_id, d.actual) for d in report.discrepancies) == [
        ("entry_sign", users[1], -5),
        ("entry_sign", users[1], 5),
    ]


async def test_duplicate_references_are_reported_if_the_index_is_gone(store: Store) -> None:
    users = await busy_ledger(store)
    await store.execute(LQ.drop_ref_index)
    async with store.transaction() as tx:
        await ledger.grant(tx, user_id=users[1], amount=5, ref_type="payment", ref_id="p")
        await ledger.grant(tx, user_id=users[1], amount=5, ref_type="payment", ref_id="p")
    [found] = (await reconcile(store)).discrepancies
    assert (found.kind, found.user_id, found.expected, found.actual) == ("unique_refs", None, 1, 2)
    assert "payment:p" in found.detail


async def test_more_checks_can_be_added(store: Store) -> None:
    async def always(db: Executor) -> list[Discrepancy]:
        return [Discrepancy("always", None, "seen", actual=await db.fetch_val(LQ.count_entries))]

    report = await reconcile(store, checks=(*LEDGER_CHECKS, Check("always", always)))
    assert report.discrepancies == (Discrepancy("always", None, "seen", actual=0),)
    assert report.checks[-1] == "always"


def _lines(output: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in output.getvalue().splitlines()]


async def test_the_reconciler_logs_each_run(store: Store, autojump_clock: trio.abc.Clock) -> None:
    output = io.StringIO()
    logs.configure("info", "json", stream=output)
    users = await busy_ledger(store)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_reconciler, store, 3600.0)
        assert _lines(output) == []  # the first run waits one interval
        await trio.sleep(3600.5)
        await store.execute(LQ.set_balance, users[1], 7)
        await trio.sleep(3600)
        nursery.cancel_scope.cancel()
    lines = [line for line in _lines(output) if line["logger"] == "lumiku.credits.reconcile"]
    assert [(line["level"], line["event"]) for line in lines] == [
        ("info", "credits.reconcile"),
        ("error", "credits.discrepancy"),
        ("error", "credits.discrepancy"),
        ("info", "credits.reconcile"),
    ]
    assert (lines[0]["ok"], lines[0]["accounts_checked"], lines[0]["entries_checked"]) == (
        True,
        2,
        5,
    )
    assert {line["kind"] for line in lines[1:3]} == {
        "balance_equals_entries",
        "newest_entry_matches_balance",
    }
    assert {(line["user_id"], line["expected"], line["actual"]) for line in lines[1:3]} == {
        (str(users[1]), 0, 7)
    }
    assert (lines[3]["ok"], lines[3]["discrepancies"]) == (False, 2)


class FlakyStore:
    """A store whose first audit fails: the reconciler must log it and carry on."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.failures = 1

    async def fetch_val(self, query, *args):
        if self.failures:
            self.failures -= 1
            raise Unavailable("database went away")
        return await self.store.fetch_val(query, *args)

    async def fetch_all(self, query, *args):
        return await self.store.fetch_all(query, *args)


async def test_the_reconciler_survives_a_database_error(
    store: Store, autojump_clock: trio.abc.Clock
) -> None:
    output = io.StringIO()
    logs.configure("info", "json", stream=output)
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_reconciler, FlakyStore(store), 60.0)
        await trio.sleep(125)
        nursery.cancel_scope.cancel()
    lines = [line for line in _lines(output) if line["logger"] == "lumiku.credits.reconcile"]
    assert [(line["level"], line["event"]) for line in lines] == [
        ("error", "credits.reconcile_failed"),
        ("info", "credits.reconcile"),
        ("info", "credits.reconcile"),
    ]
    assert "database went away" in lines[0]["error"]


@pytest.mark.parametrize("interval_s", [0.0, -1.0])
async def test_the_interval_must_be_positive(store: Store, interval_s: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        await serve_reconciler(store, interval_s)
