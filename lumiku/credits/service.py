"""What the routes ask of credits, given `Deps` (SPEC §5): the ledger and the admin grant
take the store or a transaction so that they compose with other writes; routes call these
and never the Store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lumiku.credits import ledger
from lumiku.credits.grants import grant_credits

if TYPE_CHECKING:
    from uuid import UUID

    from lumiku.accounts.service import User
    from lumiku.deps import Deps


async def balance(deps: Deps, user_id: UUID) -> int:
    """The user's balance (`ledger.balance`); 0 when there is no account. Reads only."""
    return await ledger.balance(deps.store, user_id)


async def history(deps: Deps, user_id: UUID, *, limit: int, cursor: str | None) -> ledger.Page:
    """The user's entries newest first (`ledger.history`). Raises ValidationFailed."""
    return await ledger.history(deps.store, user_id, limit=limit, cursor=cursor)


async def grant(
    deps: Deps,
    *,
    amount: int,
    reason: str,
    granted_by: str,
    user_id: UUID | None,
    email: str | None,
) -> tuple[User, ledger.Entry]:
    """An admin's grant to the user named by id or email (`grants.grant_credits`). Raises
    ValidationFailed, NotFound."""
    return await grant_credits(
        deps.store,
        amount=amount,
        reason=reason,
        granted_by=granted_by,
        user_id=user_id,
        email=email,
    )
