"""`/api/auth/*`: register, login, profile (SPEC §4)."""

from __future__ import annotations

from typing import Any

import attrs
from quart import Blueprint

from lumiku.accounts import service
from lumiku.credits import service as credits_service
from lumiku.http.auth import authenticated, current_user, user_identity
from lumiku.http.bodies import read_body
from lumiku.http.context import current_deps
from lumiku.http.ratelimit import rate_limited

blueprint = Blueprint("accounts", __name__, url_prefix="/api/auth")


@attrs.frozen
class RegisterBody:
    email: str
    password: str
    name: str | None = None


@attrs.frozen
class LoginBody:
    email: str
    password: str


@blueprint.post("/register")
@rate_limited("register")
async def register() -> tuple[dict[str, Any], int]:
    body = await read_body(RegisterBody)
    deps = current_deps()
    session = await service.register(deps, email=body.email, password=body.password, name=body.name)
    balance = await credits_service.balance(deps, session.user.id)
    return {"user": session.user.as_dict(), "token": session.token, "balance": balance}, 201


@blueprint.post("/login")
@rate_limited("login")
async def login() -> dict[str, Any]:
    body = await read_body(LoginBody)
    session = await service.login(current_deps(), email=body.email, password=body.password)
    return {"user": session.user.as_dict(), "token": session.token}


@blueprint.get("/profile")
@authenticated
async def profile() -> dict[str, Any]:
    user = current_user()
    balance = await credits_service.balance(current_deps(), user.id)
    return {"user": user.as_dict(), "balance": balance}


@blueprint.put("/profile")
@authenticated
@rate_limited("profile_update", identity=user_identity)
async def update_profile() -> dict[str, Any]:
    changes = await read_body(service.ProfileChanges)
    session = await service.update_profile(current_deps(), current_user(), changes)
    return {"user": session.user.as_dict(), "token": session.token}
