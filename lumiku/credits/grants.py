"""Granting credits by hand: the admin route and `lumiku credits grant` share this."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Final

from lumiku.accounts.service import User, find_user
from lumiku.credits import ledger
from lumiku.errors import FieldError, ValidationFailed

if TYPE_CHECKING:
    from lumiku.db.store import Store

GRANT_MAX: Final = 10_000_000
REASON_MAX: Final = 200


def grant_problems(amount: int, reason: str) -> list[FieldError]:
    problems = []
    if not 1 <= amount <= GRANT_MAX:
        problems.append(FieldError("amount", f"must be between 1 and {GRANT_MAX}"))
    if not 1 <= len(reason.strip()) <= REASON_MAX:
        problems.append(FieldError("reason", f"must be 1 to {REASON_MAX} characters"))
    return problems


async def grant_credits(
    store: Store,
    *,
    amount: int,
    reason: str,
    granted_by: str,
    user_id: uuid.UUID | None = None,
    email: str | None = None,
) -> tuple[User, ledger.Entry]:
    """Grant `amount` to the user named by id or email, in one transaction: a `grant` entry
    whose note records the reason and who granted it. Raises ValidationFailed, NotFound."""
    problems = grant_problems(amount, reason)
    if problems:
        raise ValidationFailed(problems)
    async with store.transaction() as tx:
        user = await find_user(tx, user_id=user_id, email=email)
        entry = await ledger.grant(
            tx,
            user_id=user.id,
            amount=amount,
            kind="grant",
            ref_type="manual_grant",
            ref_id=str(uuid.uuid4()),
            note=f"{reason.strip()} (by {granted_by})",
        )
    return user, entry
