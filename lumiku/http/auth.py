"""Who is calling: the ONE authentication dependency and the ONE role check (SPEC §4).

`authenticated` wraps every protected route: it takes the bearer token, resolves the user
(token version checked against the database, so a password change logs every older token
out), stores it for `current_user()` and tags the request's log lines with the user id.
`admin_only` adds the role check, which lives in `require_role` and nowhere else.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

from quart import g, request

from lumiku.accounts.service import User, authenticate
from lumiku.accounts.tokens import bearer
from lumiku.errors import Forbidden, Unauthorized
from lumiku.http.context import current_deps
from lumiku.observability.logging import user_id_var

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

P = ParamSpec("P")
R = TypeVar("R")

ADMIN: Final = "admin"


def require_role(user: User, role: str) -> None:
    """The role check: roles are lower-case strings compared exactly; Forbidden otherwise."""
    if user.role != role:
        raise Forbidden(
            "This needs the admin role." if role == ADMIN else f"This needs the {role} role."
        )


def is_admin(user: User) -> bool:
    return user.role == ADMIN


def current_user() -> User:
    """The authenticated user of this request (only inside an `authenticated` route)."""
    user: User = g.lumiku_user
    return user


async def resolve(token: str | None) -> User:
    """Authenticate `token` for the current app and remember the user for this request."""
    user = await authenticate(current_deps(), token)
    g.lumiku_user = user
    user_id_var.set(str(user.id))
    return user


async def optional_user() -> User | None:
    """The caller when a valid bearer token came with the request, else None (no 401)."""
    known: User | None = g.get("lumiku_user")
    if known is not None:
        return known
    header = request.headers.get("Authorization")
    if not header:
        return None
    try:
        return await resolve(bearer(header))
    except Unauthorized:
        return None


async def _user() -> User:
    """This request's user, resolved once (a flag check may have done it already)."""
    known: User | None = g.get("lumiku_user")
    return (
        known if known is not None else await resolve(bearer(request.headers.get("Authorization")))
    )


def authenticated(route: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Route decorator: 401 UNAUTHORIZED without a valid `Authorization: Bearer` token."""

    @functools.wraps(route)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        await _user()
        return await route(*args, **kwargs)

    return wrapper


def admin_only(route: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Route decorator: authenticated, and 403 FORBIDDEN unless the user is an admin."""

    @functools.wraps(route)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        user = await _user()
        require_role(user, ADMIN)
        return await route(*args, **kwargs)

    return wrapper


def user_identity() -> str:
    """Rate-limit identity of per-user rules (used after authentication)."""
    user: Any = g.get("lumiku_user")
    return str(user.id) if user is not None else str(request.scope.get("lumiku.client_ip"))
