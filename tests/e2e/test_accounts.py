"""Accounts over HTTP against the running service, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
import trio

from tests.e2e.harness import (
    STRONG_PASSWORD,
    Service,
    bearer,
    make_settings,
    register,
    running_service,
)

# Lockout and the per-IP login limit both trip at the 6th attempt; these tests isolate
# the account rules by raising the IP limits (the limiter has tests of its own).
GENEROUS_LIMITS = {"LUMIKU_RATELIMIT_LOGIN": "1000/15m", "LUMIKU_RATELIMIT_REGISTER": "1000/1h"}


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    env = {"LUMIKU_DATABASE_URL": database_url, **GENEROUS_LIMITS}
    with trio.fail_after(60):
        async with running_service(make_settings(tmp_path, env)) as svc:
            yield svc


async def test_register_gives_a_token_and_the_welcome_bonus(service: Service) -> None:
    body = await register(service.client, "Ana@Example.com ")
    assert body["user"]["email"] == "ana@example.com"
    assert body["balance"] == 100
    profile = await service.client.get("/api/auth/profile", headers=bearer(body["token"]))
    assert profile.status_code == 200
    assert profile.json()["balance"] == 100
    history = (
        await service.client.get("/api/credits/history", headers=bearer(body["token"]))
    ).json()
    assert [(e["kind"], e["delta"]) for e in history["entries"]] == [("welcome", 100)]


async def test_duplicate_email_is_409(service: Service) -> None:
    await register(service.client, "dup@example.com")
    again = await service.client.post(
        "/api/auth/register", json={"email": "DUP@example.com", "password": STRONG_PASSWORD}
    )
    assert again.status_code == 409
    assert again.json()["code"] == "EMAIL_TAKEN"


async def test_weak_password_lists_every_violated_rule(service: Service) -> None:
    response = await service.client.post(
        "/api/auth/register", json={"email": "weak@example.com", "password": "aaab"}
    )
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    messages = [e["message"] for e in body["errors"] if e["field"] == "password"]
    assert len(messages) == 3  # too short, too few classes, a run of three
    assert any("12 characters" in m for m in messages)
    common = await service.client.post(
        "/api/auth/register", json={"email": "c@example.com", "password": "Password2024!"}
    )
    assert [e["message"] for e in common.json()["errors"]] == ["is too common"]


async def test_unknown_fields_and_wrong_types_are_refused(service: Service) -> None:
    response = await service.client.post(
        "/api/auth/register",
        json={"email": 5, "password": STRONG_PASSWORD, "role": "admin", "credits": 10**6},
    )
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"email", "role", "credits"}


async def test_wrong_password_and_unknown_email_answer_the_same(service: Service) -> None:
    await register(service.client, "known@example.com")
    wrong = await service.client.post(
        "/api/auth/login", json={"email": "known@example.com", "password": "Wrong-passw0rd!"}
    )
    unknown = await service.client.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": "Wrong-passw0rd!"}
    )
    assert wrong.status_code == unknown.status_code == 401
    strip = lambda r: {k: v for k, v in r.json().items() if k != "request_id"}  # noqa: E731
    assert strip(wrong) == strip(unknown)
    assert wrong.json()["code"] == "INVALID_CREDENTIALS"


async def test_sixth_failure_locks_the_account(service: Service) -> None:
    await register(service.client, "locked@example.com")
    attempt = {"email": "locked@example.com", "password": "Wrong-passw0rd!"}
    for _ in range(5):
        assert (await service.client.post("/api/auth/login", json=attempt)).status_code == 401
    locked = await service.client.post(
        "/api/auth/login", json={"email": "locked@example.com", "password": STRONG_PASSWORD}
    )
    assert locked.status_code == 429
    assert locked.json()["code"] == "ACCOUNT_LOCKED"
    assert 0 < int(locked.headers["retry-after"]) <= 900


async def test_profile_update_and_password_change_invalidates_old_tokens(service: Service) -> None:
    body = await register(service.client, "change@example.com")
    old = bearer(body["token"])
    renamed = await service.client.put(
        "/api/auth/profile", json={"name": " New  Name "}, headers=old
    )
    assert renamed.status_code == 200
    assert renamed.json()["user"]["name"] == "New Name"
    needs_current = await service.client.put(
        "/api/auth/profile", json={"new_password": "An0ther&Secret-pw"}, headers=old
    )
    assert needs_current.json()["errors"][0]["field"] == "current_password"
    changed = await service.client.put(
        "/api/auth/profile",
        json={"current_password": STRONG_PASSWORD, "new_password": "An0ther&Secret-pw"},
        headers=old,
    )
    assert changed.status_code == 200
    assert (await service.client.get("/api/auth/profile", headers=old)).status_code == 401
    new = bearer(changed.json()["token"])
    assert (await service.client.get("/api/auth/profile", headers=new)).status_code == 200
    login = await service.client.post(
        "/api/auth/login", json={"email": "change@example.com", "password": "An0ther&Secret-pw"}
    )
    assert login.status_code == 200


def _b64(data: dict[str, object] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _forged_tokens(secret: str, user_id: str, email: str) -> dict[str, str]:
    now = int(time.time())
    claims = {"sub": user_id, "email": email, "iat": now, "exp": now + 3600, "ver": 1}
    public_key = b"-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n"
    import hashlib
    import hmac

    header_rs = _b64({"alg": "RS256", "typ": "JWT"})
    signing_input = f"{header_rs}.{_b64(claims)}".encode()
    forged_signature = hmac.new(public_key, signing_input, hashlib.sha256).digest()
    rs256_trick = f"{signing_input.decode()}.{_b64(forged_signature)}"
    valid = jwt.encode(claims, secret, algorithm="HS256")
    head, _payload, signature = valid.split(".")
    tampered_payload = _b64({**claims, "sub": "00000000-0000-0000-0000-000000000001"})
    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "HS384": jwt.encode(claims, secret, algorithm="HS384"),
        "HS512": jwt.encode(claims, secret, algorithm="HS512"),
        "RS256 public key as HMAC secret": rs256_trick,
        "expired": jwt.encode(
            {**claims, "iat": now - 7200, "exp": now - 3600}, secret, algorithm="HS256"
        ),
        "tampered payload": f"{head}.{tampered_payload}.{signature}",
        "missing ver": jwt.encode(
            {k: v for k, v in claims.items() if k != "ver"}, secret, algorithm="HS256"
        ),
        "wrong secret": jwt.encode(
            claims, "another-secret-of-sufficient-length", algorithm="HS256"
        ),
        "garbage": "not.a.token",
    }


async def test_forged_and_stale_tokens_are_401(service: Service) -> None:
    body = await register(service.client, "victim@example.com")
    good = await service.client.get("/api/auth/profile", headers=bearer(body["token"]))
    assert good.status_code == 200
    secret = service.settings.auth.jwt_secret
    for name, token in _forged_tokens(secret, body["user"]["id"], "victim@example.com").items():
        response = await service.client.get("/api/auth/profile", headers=bearer(token))
        assert response.status_code == 401, name
        assert response.json()["code"] == "UNAUTHORIZED", name
    missing = await service.client.get("/api/auth/profile")
    assert missing.status_code == 401


async def test_admin_routes_need_the_admin_role(service: Service) -> None:
    from lumiku.accounts import service as accounts
    from lumiku.supervisor import open_deps

    user = await register(service.client, "plain@example.com")
    async with open_deps(service.settings, migrate=False) as deps:
        await accounts.create_user(
            deps, email="boss@example.com", password=STRONG_PASSWORD, role="admin"
        )
    admin_login = await service.client.post(
        "/api/auth/login", json={"email": "boss@example.com", "password": STRONG_PASSWORD}
    )
    admin = bearer(admin_login.json()["token"])
    grant = {"email": "plain@example.com", "amount": 25, "reason": "support refund"}
    refused = await service.client.post(
        "/api/admin/credits/grant", json=grant, headers=bearer(user["token"])
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "FORBIDDEN"
    granted = await service.client.post("/api/admin/credits/grant", json=grant, headers=admin)
    assert granted.status_code == 201, granted.text
    assert granted.json()["balance"] == 125
    balance = await service.client.get("/api/credits/balance", headers=bearer(user["token"]))
    assert balance.json() == {"balance": 125}
    bad = await service.client.post(
        "/api/admin/credits/grant", json={"amount": 0, "reason": ""}, headers=admin
    )
    assert {e["field"] for e in bad.json()["errors"]} == {"user_id", "amount", "reason"}
