"""A hypothesis state machine against the real ledger, on both backends.

Rules grant, charge and refund (references drawn from a small pool, so they repeat) and run
two operations at once in separate transactions. A model predicts every outcome; for the
concurrent pair the outcomes must be those of one of the two serial orders. After each step
the balances match the model and their entries, and the reconciler finds nothing.

The machine runs in a worker thread (hypothesis drives it synchronously) while the trio
loop owns the store; each rule crosses back with `trio.from_thread.run`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from uuid import UUID

import attrs
import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from lumiku.credits import ledger
from lumiku.credits.reconcile import reconcile
from lumiku.db.store import Store
from lumiku.errors import DuplicateLedgerEntry, InsufficientCredits
from tests.contract.test_ledger import assert_consistent, new_user

T = TypeVar("T")
USERS = 2
REFS = st.sampled_from(["r1", "r2", "r3"])
KINDS = st.sampled_from(["grant", "charge", "refund"])


@attrs.frozen
class Op:
    kind: str  # grant | charge | refund
    user: int
    amount: int
    ref: str


@attrs.define
class Model:
    balances: list[int]
    refs: set[tuple[str, str]] = attrs.Factory(set)  # (kind, ref) written

    def copy(self) -> Model:
        return Model(list(self.balances), set(self.refs))

    def apply(self, op: Op) -> str:
        """The outcome `op` has in this state, applying it: "+n"/"-n", none, insufficient,
        duplicate."""
        if op.kind in ("charge", "refund") and op.amount == 0:
            return "none"
        if op.kind == "charge" and self.balances[op.user] < op.amount:
            return "insufficient"
        if (op.kind, op.ref) in self.refs:
            return "none" if op.kind == "refund" else "duplicate"
        self.refs.add((op.kind, op.ref))
        delta = -op.amount if op.kind == "charge" else op.amount
        self.balances[op.user] += delta
        return f"{delta:+d}"


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        # References are unique per machine: every example shares the one database.
        self.prefix = uuid.uuid4().hex[:10]
        self.users: list[UUID] = []
        self.model = Model([0] * USERS)

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return trio.from_thread.run(fn, *args)

    @initialize()
    def open_accounts(self) -> None:
        for _ in range(USERS):
            user = self.call(new_user, self.store)
            self.call(ledger.open_account, self.store, user)
            self.users.append(user)

    async def perform(self, op: Op) -> str:
        """Run `op` in a transaction of its own; its outcome in `Model.apply`'s words."""
        user, ref_id = self.users[op.user], f"{self.prefix}-{op.ref}"
        try:
            async with self.store.transaction() as tx:
                if op.kind == "grant":
                    entry = await ledger.grant(
                        tx, user_id=user, amount=op.amount, ref_type="t", ref_id=ref_id
                    )
                elif op.kind == "charge":
                    entry = await ledger.charge(
                        tx, user_id=user, amount=op.amount, ref_type="t", ref_id=ref_id
                    )
                else:
                    entry = await ledger.refund(
                        tx, user_id=user, amount=op.amount, ref_type="t", ref_id=ref_id
                    )
        except InsufficientCredits:
            return "insufficient"
        except DuplicateLedgerEntry:
            return "duplicate"
        return "none" if entry is None else f"{entry.delta:+d}"

    def single(self, op: Op) -> None:
        expected = self.model.apply(op)
        assert self.call(self.perform, op) == expected

    @rule(user=st.integers(0, USERS - 1), amount=st.integers(1, 60), ref=REFS)
    def grant(self, user: int, amount: int, ref: str) -> None:
        self.single(Op("grant", user, amount, ref))

    @rule(user=st.integers(0, USERS - 1), amount=st.integers(0, 60), ref=REFS)
    def charge(self, user: int, amount: int, ref: str) -> None:
        self.single(Op("charge", user, amount, ref))

    @rule(user=st.integers(0, USERS - 1), amount=st.integers(0, 60), ref=REFS)
    def refund(self, user: int, amount: int, ref: str) -> None:
        self.single(Op("refund", user, amount, ref))

    @rule(
        ops=st.tuples(
            *[st.builds(Op, KINDS, st.integers(0, USERS - 1), st.integers(1, 60), REFS)] * 2
        )
    )
    def concurrent_pair(self, ops: tuple[Op, Op]) -> None:
        first, second = ops

        async def both() -> list[str]:
            outcomes = ["", ""]

            async def run(index: int, op: Op) -> None:
                outcomes[index] = await self.perform(op)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(run, 0, first)
                nursery.start_soon(run, 1, second)
            return outcomes

        actual = self.call(both)
        serial = []
        for order in ((0, 1), (1, 0)):
            model, outcomes = self.model.copy(), ["", ""]
            for index in order:
                outcomes[index] = model.apply(ops[index])
            serial.append((outcomes, model))
        matching = [model for outcomes, model in serial if outcomes == actual]
        assert matching, f"{actual} is neither serial order {[o for o, _ in serial]}"
        self.model = matching[0]

    @invariant()
    def balances_match_the_model_and_the_entries(self) -> None:
        for index, user in enumerate(self.users):
            assert self.call(assert_consistent, self.store, user) == self.model.balances[index]

    @invariant()
    def the_reconciler_finds_nothing(self) -> None:
        report = self.call(reconcile, self.store)
        assert report.ok, report.as_dict()


async def test_the_ledger_behaves_like_its_model(store: Store) -> None:
    def run() -> None:
        run_state_machine_as_test(
            lambda: LedgerMachine(store),
            settings=settings(max_examples=15, stateful_step_count=12, deadline=None),
        )

    with trio.fail_after(120):
        await trio.to_thread.run_sync(run)
