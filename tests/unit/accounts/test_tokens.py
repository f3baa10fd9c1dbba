from __future__ import annotations

import time
import uuid

import jwt
import pytest

from lumiku.accounts import tokens
from lumiku.errors import Unauthorized

SECRET = "unit-test-secret-0123456789abcdef-XYZ"


def test_round_trip() -> None:
    user_id = uuid.uuid4()
    token = tokens.issue(SECRET, user_id=user_id, email="a@example.com", version=3, ttl_s=60)
    claims = tokens.decode(SECRET, token)
    assert (claims.user_id, claims.email, claims.version) == (user_id, "a@example.com", 3)
    assert claims.expires_at - claims.issued_at == 60
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def _payload() -> dict[str, object]:
    now = int(time.time())
    return {
        "sub": str(uuid.uuid4()),
        "email": "a@example.com",
        "iat": now,
        "exp": now + 60,
        "ver": 1,
    }


@pytest.mark.parametrize("claim", ["sub", "email", "iat", "exp", "ver"])
def test_every_claim_is_required(claim: str) -> None:
    payload = _payload()
    del payload[claim]
    with pytest.raises(Unauthorized):
        tokens.decode(SECRET, jwt.encode(payload, SECRET, algorithm="HS256"))


@pytest.mark.parametrize("bad", [{"ver": "1"}, {"ver": True}, {"sub": "not-a-uuid"}])
def test_claims_of_the_wrong_type_are_refused(bad: dict[str, object]) -> None:
    payload = _payload()
    with pytest.raises(Unauthorized):
        tokens.decode(SECRET, jwt.encode({**payload, **bad}, SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Bearer abc", "abc"),
        ("bearer  abc ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer(header: str | None, expected: str | None) -> None:
    assert tokens.bearer(header) == expected
