"""Access tokens: JWT HS256 with the algorithm pinned (SPEC §4).

Claims: `sub` (user id), `email`, `iat`, `exp`, `ver` (the user's token version; a password
change bumps it, so every older token stops working). Decoding accepts HS256 only — the
header is checked before PyJWT sees the token, so `alg: none`, HS384/HS512 and RS256 tricks
are refused — and requires every claim.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Final

import attrs
import jwt

from lumiku.errors import Unauthorized

ALGORITHM: Final = "HS256"
REQUIRED: Final = ("sub", "email", "iat", "exp", "ver")


@attrs.frozen
class Claims:
    user_id: uuid.UUID
    email: str
    version: int
    issued_at: int
    expires_at: int


def issue(secret: str, *, user_id: uuid.UUID, email: str, version: int, ttl_s: int) -> str:
    now = int(time.time())
    payload = {"sub": str(user_id), "email": email, "iat": now, "exp": now + ttl_s, "ver": version}
    return jwt.encode(payload, secret, algorithm=ALGORITHM)


def decode(secret: str, token: str) -> Claims:
    """The claims of a valid, unexpired HS256 token; `Unauthorized` for anything else."""
    try:
        header = jwt.get_unverified_header(token)
        if header.get("alg") != ALGORITHM:
            raise Unauthorized("Invalid token.")
        payload: dict[str, Any] = jwt.decode(
            token, secret, algorithms=[ALGORITHM], options={"require": list(REQUIRED)}
        )
        return Claims(
            user_id=uuid.UUID(str(payload["sub"])),
            email=str(payload["email"]),
            version=_int(payload["ver"]),
            issued_at=_int(payload["iat"]),
            expires_at=_int(payload["exp"]),
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("The token has expired.") from None
    except (jwt.PyJWTError, ValueError, TypeError):
        raise Unauthorized("Invalid token.") from None


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("claim must be an integer")
    return value


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, else None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None
