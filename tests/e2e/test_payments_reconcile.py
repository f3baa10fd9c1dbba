"""`lumiku reconcile` (the real command, both backends) finds a deleted and a duplicated
purchase entry of a successful payment, and exits 5."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import trio

from lumiku.payments import service
from tests.contract.test_ledger import new_user
from tests.contract.test_payments import PQ, new_payment, paid
from tests.e2e.process import ROOT, base_env
from tests.services import open_test_store


async def reconcile_cli(tmp_path: Path, database_url: str) -> tuple[int, dict[str, Any]]:
    env = base_env(tmp_path, {"LUMIKU_DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)})
    done = await trio.run_process(
        [sys.executable, "-m", "lumiku", "reconcile", "--json"],
        env=env,
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


def kinds(report: dict[str, Any]) -> list[tuple[str, int | None]]:
    return sorted(
        (d["kind"], d["actual"])
        for d in report["discrepancies"]
        if d["kind"] in ("payment_purchase", "purchase_without_payment")
    )


async def test_reconcile_reports_deleted_and_duplicated_purchases(
    tmp_path: Path, database_url: str
) -> None:
    with trio.fail_after(120):
        async with open_test_store(database_url, tmp_path) as store:
            await store.migrate()
            user = await new_user(store, balance=100)
            deleted, duplicated = await new_payment(store, user), await new_payment(store, user)
            for order_id in (deleted, duplicated):
                assert await service._credit(store, paid(order_id)) == "credited"
            code, report = await reconcile_cli(tmp_path, database_url)
            assert (code, report["ok"]) == (0, True)
            assert {"payment_purchase", "purchase_without_payment"} <= set(report["checks"])

            await store.execute(PQ.delete_purchase, deleted)
            await store.execute(PQ.drop_ref_index)
            await store.execute(PQ.duplicate_purchase, duplicated)
            code, report = await reconcile_cli(tmp_path, database_url)
            assert code == 5
            assert kinds(report) == [("payment_purchase", 0), ("payment_purchase", 1000)]
            found = {
                d["detail"].split()[1]
                for d in report["discrepancies"]
                if d["kind"] == "payment_purchase"
            }
            assert found == {deleted, duplicated}
