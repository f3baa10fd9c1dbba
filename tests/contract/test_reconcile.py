"""The ledger audit on both backends: it finds what raw writes broke, and changes nothing."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial

import pytest
import trio
from trio.testing import MockClock

from lumiku.credits import ledger
from lumiku.credits.reconcile import (
    LEDGER_CHECKS,
    Check,
    Discrepancy,
    Report,
    reconcile,
    serve_reconciler,
)
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
    now = datetime.now(UTC)
    # +5 then -5: the balance and the newest entry still agree; only the reference repeats.
    await store.execute(LQ.insert_raw_entry, users[1], 5, 5, "adjustment", "payment", "p", now)
    await store.execute(LQ.insert_raw_entry, users[1], -5, 0, "adjustment", "payment", "p", now)
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
    return [
        line
        for line in map(json.loads, output.getvalue().splitlines())
        if line["logger"] == "lumiku.credits.reconcile"
    ]


class Waiter(logging.Handler):
    """Wakes the test at each line the reconciler logs, noting the (virtual) time.

    The test waits for lines instead of sleeping for a guessed time: under autojump_clock
    a sleep in the test would race the reconciler's own database I/O.
    """

    def __init__(self) -> None:
        super().__init__()
        self.send, self.receive = trio.open_memory_channel[float](100)

    def emit(self, record: logging.LogRecord) -> None:
        self.send.send_nowait(trio.current_time())


@pytest.fixture
def clock() -> MockClock:
    """A virtual clock that jumps only when the test says so: opening a PostgreSQL store
    under autojump would time its connections out in virtual time."""
    return MockClock(autojump_threshold=math.inf)


@contextlib.contextmanager
def autojump(clock: MockClock) -> Iterator[None]:
    """Autojump while the block runs (the store is open by then, and closed after). The
    jump waits for 50 ms of real idleness: with 0 the clock would also leap while a query
    is in flight on a loaded machine, measuring the machine instead of the reconciler."""
    clock.autojump_threshold = 0.05
    try:
        yield
    finally:
        clock.autojump_threshold = math.inf


@pytest.fixture
def waiter() -> Iterator[Waiter]:
    handler = Waiter()
    logger = logging.getLogger("lumiku.credits.reconcile")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


async def test_the_reconciler_logs_a_clean_run_every_interval(
    store: Store, clock: MockClock, waiter: Waiter
) -> None:
    output = io.StringIO()
    logs.configure("info", "json", stream=output)
    await busy_ledger(store)
    with autojump(clock):
        async with trio.open_nursery() as nursery:
            started = trio.current_time()
            await nursery.start(serve_reconciler, store, 3600.0)
            times = [await waiter.receive.receive() - started for _ in range(2)]
            nursery.cancel_scope.cancel()
    # the first run after one interval, then one run per interval
    assert times[0] >= 3600
    assert times[1] - times[0] >= 3600
    lines = _lines(output)
    assert [(line["level"], line["event"]) for line in lines] == [
        ("info", "credits.reconcile"),
        ("info", "credits.reconcile"),
    ]
    assert {
        k: lines[0][k] for k in ("ok", "accounts_checked", "entries_checked", "discrepancies")
    } == {"ok": True, "accounts_checked": 2, "entries_checked": 5, "discrepancies": 0}


async def test_the_reconciler_logs_each_discrepancy(
    store: Store, clock: MockClock, waiter: Waiter
) -> None:
    output = io.StringIO()
    logs.configure("info", "json", stream=output)
    users = await busy_ledger(store)
    await store.execute(LQ.set_balance, users[1], 7)
    reports: list[Report] = []  # what the metrics receive
    with autojump(clock):
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve_reconciler, on_report=reports.append), store, 60.0)
            for _ in range(3):
                await waiter.receive.receive()
            nursery.cancel_scope.cancel()
    lines = _lines(output)
    assert [(line["level"], line["event"]) for line in lines] == [
        ("error", "credits.discrepancy"),
        ("error", "credits.discrepancy"),
        ("info", "credits.reconcile"),
    ]
    assert {line["kind"] for line in lines[:2]} == {
        "balance_equals_entries",
        "newest_entry_matches_balance",
    }
    assert {(line["user_id"], line["expected"], line["actual"]) for line in lines[:2]} == {
        (str(users[1]), 0, 7)
    }
    assert (lines[2]["ok"], lines[2]["discrepancies"]) == (False, 2)
    (report,) = reports
    assert sorted(d.kind for d in report.discrepancies) == [
        "balance_equals_entries",
        "newest_entry_matches_balance",
    ]


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
    store: Store, clock: MockClock, waiter: Waiter
) -> None:
    output = io.StringIO()
    logs.configure("info", "json", stream=output)
    with autojump(clock):
        async with trio.open_nursery() as nursery:
            started = trio.current_time()
            await nursery.start(serve_reconciler, FlakyStore(store), 60.0)
            reported = await waiter.receive.receive()
            nursery.cancel_scope.cancel()
    lines = [
        line
        for line in map(json.loads, output.getvalue().splitlines())
        if line["logger"] in {"lumiku.credits.reconcile", "lumiku.retrying"}
    ]
    assert [(line["level"], line["event"]) for line in lines] == [
        ("warning", "service.task_retrying"),
        ("info", "service.task_recovered"),
        ("info", "credits.reconcile"),
    ]
    assert (lines[0]["task"], lines[0]["attempt"]) == ("credits.reconciler", 1)
    assert "database went away" in lines[0]["error"]
    assert lines[2]["ok"] is True
    # tried again after the backoff (at most 0.5 s), not a whole interval later
    assert 60 <= reported - started <= 61


@pytest.mark.parametrize("interval_s", [0.0, -1.0])
async def test_the_interval_must_be_positive(store: Store, interval_s: float) -> None:
    with pytest.raises(ValueError, match="interval"):
        await serve_reconciler(store, interval_s)
