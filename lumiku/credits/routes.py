"""`/api/credits/*` and the admin grant (SPEC §5.5)."""

from __future__ import annotations

import uuid
from typing import Any, Final

import attrs
from quart import Blueprint

from lumiku.accounts.service import find_user
from lumiku.credits import ledger
from lumiku.errors import FieldError, ValidationFailed
from lumiku.http.auth import admin_only, authenticated, current_user
from lumiku.http.bodies import query_int, read_body
from lumiku.http.context import current_deps

blueprint = Blueprint("credits", __name__)

GRANT_MAX: Final = 10_000_000
REASON_MAX: Final = 200


@blueprint.get("/api/credits/balance")
@authenticated
async def balance() -> dict[str, Any]:
    return {"balance": await ledger.balance(current_deps().store, current_user().id)}


@blueprint.get("/api/credits/history")
@authenticated
async def history() -> dict[str, Any]:
    from quart import request

    limit = query_int("limit", 20, 1, 100)
    page = await ledger.history(
        current_deps().store, current_user().id, limit=limit, cursor=request.args.get("cursor")
    )
    return page.as_dict()


@attrs.frozen
class GrantBody:
    amount: int
    reason: str
    user_id: str | None = None
    email: str | None = None


def _grant_problems(body: GrantBody) -> list[FieldError]:
    problems = []
    if (body.user_id is None) == (body.email is None):
        problems.append(FieldError("user_id", "give exactly one of user_id or email"))
    if body.user_id is not None:
        try:
            uuid.UUID(body.user_id)
        except ValueError:
            problems.append(FieldError("user_id", "must be a UUID"))
    if not 1 <= body.amount <= GRANT_MAX:
        problems.append(FieldError("amount", f"must be between 1 and {GRANT_MAX}"))
    if not 1 <= len(body.reason.strip()) <= REASON_MAX:
        problems.append(FieldError("reason", f"must be 1 to {REASON_MAX} characters"))
    return problems


@blueprint.post("/api/admin/credits/grant")
@admin_only
async def admin_grant() -> tuple[dict[str, Any], int]:
    body = await read_body(GrantBody)
    problems = _grant_problems(body)
    if problems:
        raise ValidationFailed(problems)
    deps = current_deps()
    admin = current_user()
    async with deps.store.transaction() as tx:
        user = await find_user(
            tx, user_id=uuid.UUID(body.user_id) if body.user_id else None, email=body.email
        )
        entry = await ledger.grant(
            tx,
            user_id=user.id,
            amount=body.amount,
            kind="grant",
            ref_type="admin_grant",
            ref_id=str(uuid.uuid4()),
            note=f"{body.reason.strip()} (by {admin.email})",
        )
    return {"entry": entry.as_dict(), "balance": entry.balance_after}, 201
