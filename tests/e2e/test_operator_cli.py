"""`lumiku users create`, `lumiku credits grant`, `lumiku reconcile` as an operator runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.process import ROOT, base_env

pytestmark = pytest.mark.slow

PASSWORD = "Op3rator&Secret-pw"
CHEAP_ARGON2 = {"LUMIKU_AUTH_ARGON2_MEMORY_KIB": "1024", "LUMIKU_AUTH_ARGON2_TIME_COST": "1"}


def lumiku(
    tmp_path: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumiku", *args],
        env=base_env(tmp_path, {**CHEAP_ARGON2, **(env or {})}),
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def migrated(tmp_path: Path, database_url: str) -> dict[str, str]:
    env = {"LUMIKU_DATABASE_URL": database_url}
    assert lumiku(tmp_path, "migrate", env=env).returncode == 0
    return env


def test_users_create_credits_grant_and_reconcile(tmp_path: Path, migrated: dict[str, str]) -> None:
    password_file = tmp_path / "pw"
    password_file.write_text(PASSWORD + "\n")
    created = lumiku(
        tmp_path,
        "users",
        "create",
        "--email",
        "Ops@Example.com",
        "--role",
        "admin",
        "--credits",
        "50",
        "--password-file",
        str(password_file),
        env=migrated,
    )
    assert created.returncode == 0, created.stderr
    assert "created admin ops@example.com" in created.stdout
    assert "with 50 credits" in created.stdout
    from_stdin = lumiku(
        tmp_path, "users", "create", "--email", "b@example.com", stdin=PASSWORD + "\n", env=migrated
    )
    assert from_stdin.returncode == 0, from_stdin.stderr
    assert "with 100 credits" in from_stdin.stdout  # the welcome bonus
    granted = lumiku(
        tmp_path,
        "credits",
        "grant",
        "--email",
        "ops@example.com",
        "--amount",
        "25",
        "--reason",
        "goodwill",
        env=migrated,
    )
    assert granted.returncode == 0, granted.stderr
    assert "balance 75" in granted.stdout
    audit = lumiku(tmp_path, "reconcile", "--json", env=migrated)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert json.loads(audit.stdout)["discrepancies"] == []


def test_users_create_reports_every_problem_and_duplicates(
    tmp_path: Path, migrated: dict[str, str]
) -> None:
    weak = lumiku(
        tmp_path, "users", "create", "--email", "not-an-email", stdin="short\n", env=migrated
    )
    assert weak.returncode == 1
    assert "email:" in weak.stderr
    assert "password:" in weak.stderr
    assert "Traceback" not in weak.stderr
    assert (
        lumiku(
            tmp_path, "users", "create", "--email", "d@example.com", stdin=PASSWORD, env=migrated
        ).returncode
        == 0
    )
    again = lumiku(
        tmp_path, "users", "create", "--email", "D@example.com", stdin=PASSWORD, env=migrated
    )
    assert again.returncode == 1
    assert "already exists" in again.stderr


def test_credits_grant_to_an_unknown_email_fails(tmp_path: Path, migrated: dict[str, str]) -> None:
    result = lumiku(
        tmp_path,
        "credits",
        "grant",
        "--email",
        "ghost@example.com",
        "--amount",
        "5",
        "--reason",
        "x",
        env=migrated,
    )
    assert result.returncode == 1
    assert "No such user" in result.stderr


def test_operator_commands_refuse_a_schema_behind(tmp_path: Path) -> None:
    result = lumiku(tmp_path, "reconcile")  # a fresh SQLite file: nothing migrated
    assert result.returncode == 4
    assert "lumiku migrate" in result.stderr


async def test_reconcile_exits_5_naming_an_edited_balance_and_an_orphan_charge(
    tmp_path: Path, migrated: dict[str, str]
) -> None:
    import uuid
    from datetime import UTC, datetime

    import trio

    from tests.contract.test_ledger import LQ
    from tests.services import open_test_store

    for email in ("one@example.com", "two@example.com"):
        created = await trio.to_thread.run_sync(
            lambda e=email: lumiku(
                tmp_path, "users", "create", "--email", e, stdin=PASSWORD, env=migrated
            )
        )
        assert created.returncode == 0, created.stderr
    clean = await trio.to_thread.run_sync(lambda: lumiku(tmp_path, "reconcile", env=migrated))
    assert clean.returncode == 0
    assert "consistent" in clean.stdout
    async with open_test_store(migrated["LUMIKU_DATABASE_URL"], tmp_path) as store:
        from lumiku.accounts.service import find_user

        one = await find_user(store, email="one@example.com")
        two = await find_user(store, email="two@example.com")
        await store.execute(LQ.set_balance, one.id, 175)  # someone edited a balance by hand
        await store.execute(  # a charge that never moved the balance
            LQ.insert_raw_entry,
            two.id,
            -10,
            90,
            "charge",
            "job",
            str(uuid.uuid4()),
            datetime.now(UTC),
        )
    audit = await trio.to_thread.run_sync(lambda: lumiku(tmp_path, "reconcile", env=migrated))
    assert audit.returncode == 5, audit.stdout + audit.stderr
    lines = [line for line in audit.stdout.splitlines() if line.startswith("DISCREPANCY")]
    assert any(str(one.id) in line and "175" in line for line in lines)
    assert any(str(two.id) in line for line in lines)
    as_json = await trio.to_thread.run_sync(
        lambda: lumiku(tmp_path, "reconcile", "--json", env=migrated)
    )
    assert as_json.returncode == 5
    users = {d["user_id"] for d in json.loads(as_json.stdout)["discrepancies"]}
    assert users == {str(one.id), str(two.id)}


def test_users_tag_adds_and_removes_tags(tmp_path: Path, migrated: dict[str, str]) -> None:
    assert (
        lumiku(
            tmp_path, "users", "create", "--email", "t@example.com", stdin=PASSWORD, env=migrated
        ).returncode
        == 0
    )
    added = lumiku(
        tmp_path,
        "users",
        "tag",
        "--email",
        "t@example.com",
        "--add",
        "Enterprise_Unlimited",
        "--add",
        "beta_tester",
        env=migrated,
    )
    assert added.returncode == 0, added.stderr
    assert "tags: beta_tester, enterprise_unlimited" in added.stdout
    removed = lumiku(
        tmp_path,
        "users",
        "tag",
        "--email",
        "t@example.com",
        "--remove",
        "beta_tester",
        env=migrated,
    )
    assert "tags: enterprise_unlimited" in removed.stdout
    bad = lumiku(
        tmp_path, "users", "tag", "--email", "t@example.com", "--add", "no spaces!", env=migrated
    )
    assert bad.returncode == 1
    assert "not a valid tag" in bad.stderr
