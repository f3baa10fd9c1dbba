"""The ledger's pure parts: cursors, the cost policy, argument checks, JSON shapes."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lumiku.config import CreditsSettings
from lumiku.credits import ledger
from lumiku.credits.ledger import CreditsPolicy, Entry, Page, decode_cursor, encode_cursor
from lumiku.credits.reconcile import Discrepancy, Report
from lumiku.errors import ValidationFailed


class Untouchable:
    """An executor for calls that must be refused before reaching the database."""

    async def _fail(self, *args: Any) -> Any:
        raise AssertionError("the database was reached")

    fetch_one = fetch_all = fetch_val = execute = _fail


@given(st.integers(min_value=1, max_value=2**63 - 2))
def test_cursors_round_trip(entry_id: int) -> None:
    cursor = encode_cursor(entry_id)
    assert cursor.isascii()
    assert "=" not in cursor
    assert decode_cursor(cursor) == entry_id


def _decoded(text: str) -> int | list[str]:
    """The id in a cursor, or the fields a ValidationFailed names."""
    try:
        return decode_cursor(text)
    except ValidationFailed as exc:
        return [e.field for e in exc.errors]


@given(st.text(max_size=20))
def test_any_other_text_is_refused_or_names_a_valid_id(text: str) -> None:
    result = _decoded(text)
    assert result == ["cursor"] or (isinstance(result, int) and 0 < result < 2**63 - 1)


@pytest.mark.parametrize(
    "text", ["", "=", "MA", "LTE", "MS4w", "IDE", "OTIyMzM3MjAzNjg1NDc3NTgwNw"]
)
def test_cursors_naming_no_entry_id_are_refused(text: str) -> None:
    assert _decoded(text) == ["cursor"]


def test_a_cursor_of_thousands_of_digits_is_refused_not_converted() -> None:
    for digits in ("9" * 5000, "0" * 30 + "1"):
        assert _decoded(base64.urlsafe_b64encode(digits.encode()).decode()) == ["cursor"]


def test_the_default_policy_covers_both_apps() -> None:
    policy = CreditsPolicy.from_settings(CreditsSettings())
    assert policy.unlimited_apps == frozenset({"avatar-creator", "pose-generator"})
    assert policy.cost_for(iter(["enterprise_unlimited"]), "pose-generator", 40) == 0
    assert policy.cost_for(["ENTERPRISE_UNLIMITED"], "pose-generator", 40) == 40


@pytest.mark.parametrize(
    "call",
    [
        lambda db: ledger.grant(db, user_id=uuid.uuid4(), amount=0),
        lambda db: ledger.grant(db, user_id=uuid.uuid4(), amount=-1),
        lambda db: ledger.grant(db, user_id=uuid.uuid4(), amount=1, kind="charge"),
        lambda db: ledger.grant(db, user_id=uuid.uuid4(), amount=1, ref_id="x"),
        lambda db: ledger.charge(db, user_id=uuid.uuid4(), amount=-1, ref_type="job", ref_id="j"),
        lambda db: ledger.refund(db, user_id=uuid.uuid4(), amount=-1, ref_type="job", ref_id="j"),
        lambda db: ledger.charge(db, user_id=uuid.uuid4(), amount=True, ref_type="j", ref_id="j"),
    ],
)
async def test_bad_arguments_are_refused_before_any_statement(call: Any) -> None:
    with pytest.raises(ValueError, match=r"amount|kind|together"):
        await call(Untouchable())


async def test_nothing_to_charge_or_refund_reaches_no_database() -> None:
    user = uuid.uuid4()
    db = Untouchable()
    assert await ledger.charge(db, user_id=user, amount=0, ref_type="job", ref_id="j") is None
    assert await ledger.refund(db, user_id=user, amount=0, ref_type="job", ref_id="j") is None


def test_entries_serialise_with_utc_iso_times() -> None:
    user = uuid.uuid4()
    at = datetime(2026, 1, 2, 10, 0, tzinfo=timezone(timedelta(hours=7)))
    entry = Entry(3, user, -10, 90, "charge", "job", "j", "", at)
    page = Page((entry,), encode_cursor(3))
    assert page.as_dict() == {
        "entries": [
            {
                "id": 3,
                "user_id": str(user),
                "delta": -10,
                "balance_after": 90,
                "kind": "charge",
                "ref_type": "job",
                "ref_id": "j",
                "note": "",
                "created_at": "2026-01-02T03:00:00+00:00",
            }
        ],
        "next_cursor": encode_cursor(3),
    }
    assert datetime.fromisoformat(page.as_dict()["entries"][0]["created_at"]) == at.astimezone(UTC)


def test_a_report_is_ok_only_without_discrepancies() -> None:
    clean = Report((), 3, 9)
    found = Report((Discrepancy("x", None, "detail", 1, 2),), 3, 9, ("x",))
    assert clean.ok
    assert not found.ok
    assert found.as_dict() == {
        "ok": False,
        "accounts_checked": 3,
        "entries_checked": 9,
        "checks": ["x"],
        "discrepancies": [
            {"kind": "x", "user_id": None, "detail": "detail", "expected": 1, "actual": 2}
        ],
    }
