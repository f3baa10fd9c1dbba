"""`/api/credits/*` and the admin grant (SPEC §5.5)."""

from __future__ import annotations

import uuid
from typing import Any

import attrs
from quart import Blueprint

from lumiku.credits import service
from lumiku.credits.grants import grant_problems
from lumiku.errors import FieldError, ValidationFailed
from lumiku.http.auth import admin_only, authenticated, current_user
from lumiku.http.bodies import query_int, read_body
from lumiku.http.context import current_deps

blueprint = Blueprint("credits", __name__)


@blueprint.get("/api/credits/balance")
@authenticated
async def balance() -> dict[str, Any]:
    return {"balance": await service.balance(current_deps(), current_user().id)}


@blueprint.get("/api/credits/history")
@authenticated
async def history() -> dict[str, Any]:
    from quart import request

    limit = query_int("limit", 20, 1, 100)
    page = await service.history(
        current_deps(), current_user().id, limit=limit, cursor=request.args.get("cursor")
    )
    return page.as_dict()


@attrs.frozen
class GrantBody:
    amount: int
    reason: str
    user_id: str | None = None
    email: str | None = None


def _target_problems(body: GrantBody) -> list[FieldError]:
    if (body.user_id is None) == (body.email is None):
        return [FieldError("user_id", "give exactly one of user_id or email")]
    if body.user_id is not None:
        try:
            uuid.UUID(body.user_id)
        except ValueError:
            return [FieldError("user_id", "must be a UUID")]
    return []


@blueprint.post("/api/admin/credits/grant")
@admin_only
async def admin_grant() -> tuple[dict[str, Any], int]:
    body = await read_body(GrantBody)
    problems = [*_target_problems(body), *grant_problems(body.amount, body.reason)]
    if problems:
        raise ValidationFailed(problems)
    _user, entry = await service.grant(
        current_deps(),
        amount=body.amount,
        reason=body.reason,
        granted_by=current_user().email,
        user_id=uuid.UUID(body.user_id) if body.user_id else None,
        email=body.email,
    )
    return {"entry": entry.as_dict(), "balance": entry.balance_after}, 201
