"""The credits ledger (SPEC §5): balances, and the append-only entries that explain them.

Every writing function takes the CALLER's transaction, so a charge commits or rolls back
together with the job it pays for:

```python
async with store.transaction() as tx:
    cost = policy.cost_for(user.tags, app, app_cost)
    await charge(tx, user_id=user.id, amount=cost, ref_type="job", ref_id=str(job_id))
    await tx.execute(JQ.insert_job, ...)
```

What each function writes:

- `grant` and `refund` lock the account row, insert the entry with
  `ON CONFLICT DO NOTHING` and raise the balance only when the entry went in. A repeated
  reference therefore writes nothing and leaves the transaction usable on both backends.
- `charge` is ONE conditional update (`balance >= amount`) followed by the entry. Not enough
  credits raises `InsufficientCredits` before anything is written. A repeated reference
  raises `DuplicateLedgerEntry` after the update; the transaction is then aborted (on both
  backends) and rolls back when the exception leaves its block.

Amounts are integers. References are `(ref_type, ref_id)` pairs, unique per kind.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from lumiku.db.queries import load_queries
from lumiku.errors import (
    DuplicateLedgerEntry,
    FieldError,
    InsufficientCredits,
    UniqueViolation,
    ValidationFailed,
)

if TYPE_CHECKING:
    from collections.abc import Iterable
    from uuid import UUID

    from lumiku.config import CreditsSettings
    from lumiku.db.store import Executor, Row

__all__ = [
    "GRANT_KINDS",
    "KINDS",
    "UNLIMITED_TAG",
    "CreditsPolicy",
    "Entry",
    "Page",
    "balance",
    "charge",
    "grant",
    "history",
    "open_account",
    "refund",
]

Q: Final = load_queries("lumiku.credits")

KINDS: Final = ("welcome", "grant", "purchase", "charge", "refund", "adjustment")
GRANT_KINDS: Final = frozenset({"welcome", "grant", "purchase", "adjustment"})
UNLIMITED_TAG: Final = "enterprise_unlimited"
MAX_PAGE: Final = 100
REF_INDEX: Final = "credit_entries_ref_key"
# Larger than any id: the first page has no cursor.
_NO_CURSOR: Final = 2**63 - 1


@attrs.frozen
class CreditsPolicy:
    """Who pays what: the ONE place for the `enterprise_unlimited` rule (SPEC §5.3)."""

    unlimited_apps: frozenset[str]

    @classmethod
    def from_settings(cls, settings: CreditsSettings) -> CreditsPolicy:
        return cls(frozenset(settings.unlimited_apps))

    def cost_for(self, tags: Iterable[str], app: str, cost: int) -> int:
        """0 for a user tagged `enterprise_unlimited` using an unlimited app, else `cost`."""
        if app in self.unlimited_apps and UNLIMITED_TAG in tags:
            return 0
        return cost


@attrs.frozen
class Entry:
    """One ledger line: `delta` moved the balance to `balance_after`."""

    id: int
    user_id: UUID
    delta: int
    balance_after: int
    kind: str
    ref_type: str | None
    ref_id: str | None
    note: str
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row) -> Entry:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            delta=row["delta"],
            balance_after=row["balance_after"],
            kind=row["kind"],
            ref_type=row["ref_type"],
            ref_id=row["ref_id"],
            note=row["note"],
            created_at=row["created_at"],
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the user id as text, `created_at` as ISO-8601 UTC."""
        return {
            "id": self.id,
            "user_id": str(self.user_id),
            "delta": self.delta,
            "balance_after": self.balance_after,
            "kind": self.kind,
            "ref_type": self.ref_type,
            "ref_id": self.ref_id,
            "note": self.note,
            "created_at": self.created_at.astimezone(UTC).isoformat(),
        }


@attrs.frozen
class Page:
    """Entries newest first; `next_cursor` fetches the older ones (None at the end)."""

    entries: tuple[Entry, ...]
    next_cursor: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"entries": [e.as_dict() for e in self.entries], "next_cursor": self.next_cursor}


async def open_account(tx: Executor, user_id: UUID) -> None:
    """Create `user_id`'s account with balance 0; writes nothing when it exists."""
    await tx.execute(Q.open_account, user_id, _now())


async def grant(
    tx: Executor,
    *,
    user_id: UUID,
    amount: int,
    kind: str = "grant",
    ref_type: str | None = None,
    ref_id: str | None = None,
    note: str = "",
) -> Entry:
    """Add `amount` (> 0) to the balance with one `kind` entry, opening the account if needed.

    `kind` is welcome, grant, purchase or adjustment. Writes the entry and the new balance;
    when an entry with the same (kind, ref_type, ref_id) exists, writes nothing and raises
    `DuplicateLedgerEntry` (the transaction stays usable). Raises ValueError for a bad
    kind, amount or half a reference.
    """
    if kind not in GRANT_KINDS:
        raise ValueError(f"grant kind must be one of {sorted(GRANT_KINDS)}, not {kind!r}")
    _check_amount(amount, positive=True)
    _check_ref(ref_type, ref_id)
    now = _now()
    current = await tx.fetch_val(Q.open_and_lock_account, user_id, now)
    entry = await _insert_once(
        tx, user_id, amount, current + amount, kind, ref_type, ref_id, note, now
    )
    if entry is None:
        raise DuplicateLedgerEntry(f"a {kind} entry for {ref_type}:{ref_id} exists already")
    await tx.execute(Q.add_to_balance, user_id, amount, now)
    return entry


async def charge(
    tx: Executor, *, user_id: UUID, amount: int, ref_type: str, ref_id: str, note: str = ""
) -> Entry | None:
    """Take `amount` from the balance and write a `charge` entry (delta = -amount).

    `amount` 0 writes nothing and returns None (users who pay nothing get no entry).
    Without enough credits (or without an account) raises `InsufficientCredits(required,
    available)` having written nothing. A repeated (ref_type, ref_id) raises
    `DuplicateLedgerEntry`; the balance was already lowered, so the transaction is left
    aborted and must roll back (it does when the exception leaves its block).
    """
    _check_amount(amount, positive=False)
    _check_ref(ref_type, ref_id)
    if amount == 0:
        return None
    now = _now()
    after = await tx.fetch_val(Q.take_from_balance, user_id, amount, now)
    if after is None:
        available = await tx.fetch_val(Q.account_balance, user_id)
        raise InsufficientCredits(required=amount, available=available or 0)
    try:
        entry_id = await tx.fetch_val(
            Q.insert_entry, user_id, -amount, after, "charge", ref_type, ref_id, note, now
        )
    except UniqueViolation as exc:
        if exc.constraint != REF_INDEX:
            raise
        raise DuplicateLedgerEntry(f"a charge for {ref_type}:{ref_id} exists already") from exc
    return Entry(entry_id, user_id, -amount, after, "charge", ref_type, ref_id, note, now)


async def refund(
    tx: Executor, *, user_id: UUID, amount: int, ref_type: str, ref_id: str, note: str = ""
) -> Entry | None:
    """Give `amount` back with a `refund` entry, exactly once per (ref_type, ref_id).

    Returns None and writes nothing when `amount` is 0 or a refund for this reference
    exists (also one committed meanwhile by a concurrent transaction: the account row lock
    and the unique index decide). Otherwise writes the entry and raises the balance.
    Raises LookupError when the user has no account (nothing was ever charged).
    """
    _check_amount(amount, positive=False)
    _check_ref(ref_type, ref_id)
    if amount == 0:
        return None
    current = await tx.fetch_val(Q.lock_account, user_id)
    if current is None:
        raise LookupError(f"no credit account for user {user_id}")
    now = _now()
    entry = await _insert_once(
        tx, user_id, amount, current + amount, "refund", ref_type, ref_id, note, now
    )
    if entry is not None:
        await tx.execute(Q.add_to_balance, user_id, amount, now)
    return entry


async def balance(executor: Executor, user_id: UUID) -> int:
    """The user's balance; 0 when there is no account. Reads only."""
    value = await executor.fetch_val(Q.account_balance, user_id)
    return int(value or 0)


async def spent_since(executor: Executor, user_id: UUID, since: datetime) -> int:
    """What the user spent since `since`: charges minus refunds written since. Reads only."""
    return int(await executor.fetch_val(Q.spent_since, user_id, since) or 0)


async def history(
    executor: Executor, user_id: UUID, *, limit: int = 20, cursor: str | None = None
) -> Page:
    """Up to `limit` (1..100) entries, newest first, older than `cursor`. Reads only.

    Raises `ValidationFailed` for a limit out of range or a cursor this did not make.
    """
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed([FieldError("limit", f"must be between 1 and {MAX_PAGE}")])
    before = _NO_CURSOR if cursor is None else decode_cursor(cursor)
    rows = await executor.fetch_all(Q.history_page, user_id, before, limit + 1)
    entries = tuple(Entry.from_row(row) for row in rows[:limit])
    more = len(rows) > limit
    return Page(entries, encode_cursor(entries[-1].id) if more else None)


def encode_cursor(entry_id: int) -> str:
    """The opaque cursor for the entries older than `entry_id`."""
    return base64.urlsafe_b64encode(str(entry_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The entry id inside a cursor from `encode_cursor`; ValidationFailed otherwise."""
    invalid = ValidationFailed([FieldError("cursor", "is not a cursor from a previous page")])
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError):
        raise invalid from None
    # Length first: int() of thousands of digits is slow, past 4300 an error.
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise invalid
    if not 0 < int(text) < _NO_CURSOR:
        raise invalid
    return int(text)


async def _insert_once(
    tx: Executor,
    user_id: UUID,
    delta: int,
    balance_after: int,
    kind: str,
    ref_type: str | None,
    ref_id: str | None,
    note: str,
    now: datetime,
) -> Entry | None:
    entry_id = await tx.fetch_val(
        Q.insert_entry_once, user_id, delta, balance_after, kind, ref_type, ref_id, note, now
    )
    if entry_id is None:
        return None
    return Entry(entry_id, user_id, delta, balance_after, kind, ref_type, ref_id, note, now)


def _check_amount(amount: int, *, positive: bool) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError(f"amount must be an integer, not {amount!r}")
    if amount < 0 or (positive and amount == 0):
        raise ValueError(f"amount must be {'> 0' if positive else '>= 0'}, not {amount}")


def _check_ref(ref_type: str | None, ref_id: str | None) -> None:
    if (ref_type is None) != (ref_id is None):
        raise ValueError("ref_type and ref_id go together: give both or neither")


def _now() -> datetime:
    return datetime.now(UTC)
