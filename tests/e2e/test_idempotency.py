"""Idempotency-Key over HTTP (SPEC §6) on SQLite and PostgreSQL: replays, reuse, races,
validation, per-user scope, a key released by a refused payment, and expiry."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio

from lumiku.apps.registry import App, Registry
from lumiku.credits.grants import grant_credits
from lumiku.db.queries import load_queries
from lumiku.jobs import purge_idempotency_keys
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from lumiku.jobs.submit import KEY_TTL
from lumiku.supervisor import open_deps
from tests.e2e.harness import Service, bearer, make_settings, register, running_service

# Test-only statements on the key rows (aging a key), shared with the contract tests.
JQ: Final = load_queries("tests.contract", "jobs_queries.sql")
COST: Final = 30
WELCOME: Final = 100
BODY: Final = {"app": "demo", "kind": "demo.quick", "cost": COST, "payload": {"prompt": "a cat"}}


async def quick(ctx: JobContext) -> Outcome:
    return Outcome({"prompt": ctx.payload.get("prompt")})


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    registry = Registry([App("demo", "Demo", kinds=(JobKind("demo.quick", quick),))])
    env = {"LUMIKU_DATABASE_URL": database_url, "LUMIKU_JOBS_POLL_S": "0.05"}
    with trio.fail_after(60):
        async with running_service(make_settings(tmp_path, env), apps=registry) as svc:
            yield svc


async def post_job(
    service: Service, token: str, key: str | bytes | None, body: Any = BODY
) -> httpx.Response:
    """POST the body as JSON text (`body` may be a pre-serialized string)."""
    headers: dict[str, str | bytes] = {**bearer(token), "content-type": "application/json"}
    if key is not None:
        headers["idempotency-key"] = key
    content = body if isinstance(body, str) else json.dumps(body)
    return await service.client.post("/api/_test/jobs", content=content, headers=headers)


async def charges(service: Service, token: str) -> list[dict[str, Any]]:
    """The user's `charge` ledger entries, newest first."""
    response = await service.client.get("/api/credits/history?limit=100", headers=bearer(token))
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["next_cursor"] is None
    return [e for e in page["entries"] if e["kind"] == "charge"]


async def job_ids(service: Service, token: str) -> list[str]:
    response = await service.client.get("/api/jobs?limit=100", headers=bearer(token))
    assert response.status_code == 200, response.text
    return [j["id"] for j in response.json()["jobs"]]


async def balance(service: Service, token: str) -> int:
    response = await service.client.get("/api/credits/balance", headers=bearer(token))
    return int(response.json()["balance"])


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert (problem["status"], problem["code"]) == (status, code)
    assert problem["request_id"] == response.headers["x-request-id"]
    return problem


async def test_the_same_key_and_body_replay_the_first_response_and_charge_once(
    service: Service,
) -> None:
    user = await register(service.client, "replay@example.com")
    token = user["token"]
    first = await post_job(service, token, "order-1")
    assert first.status_code == 202, first.text
    assert "idempotent-replayed" not in first.headers
    # The same JSON written differently is the same request.
    rewritten = (
        '{ "payload": {"prompt": "a cat"}, "cost": 30,\n "kind": "demo.quick", "app": "demo" }'
    )
    for body in (BODY, rewritten):
        again = await post_job(service, token, "order-1", body)
        assert again.status_code == 202, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json()["job"]["id"] == first.json()["job"]["id"]
        assert again.json()["charged"] == first.json()["charged"] == COST
    job_id = first.json()["job"]["id"]
    assert await job_ids(service, token) == [job_id]
    [charge] = await charges(service, token)
    assert (charge["delta"], charge["ref_type"], charge["ref_id"]) == (-COST, "job", job_id)
    assert await balance(service, token) == WELCOME - COST


async def test_the_same_key_with_another_body_is_refused_with_422(service: Service) -> None:
    user = await register(service.client, "reuse@example.com")
    token = user["token"]
    first = await post_job(service, token, "order-2")
    assert first.status_code == 202, first.text
    other = {**BODY, "payload": {"prompt": "a dog"}}
    refused = await post_job(service, token, "order-2", other)
    problem = assert_problem(refused, 422, "IDEMPOTENCY_KEY_REUSED")
    assert problem["type"] == "/problems/idempotency-key-reused"
    assert await job_ids(service, token) == [first.json()["job"]["id"]]
    assert len(await charges(service, token)) == 1
    # The refusal did not disturb the key: the first body still replays.
    again = await post_job(service, token, "order-2")
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["job"]["id"] == first.json()["job"]["id"]


async def test_concurrent_duplicates_make_one_job_and_one_charge(service: Service) -> None:
    user = await register(service.client, "race@example.com")
    token = user["token"]
    answers: list[httpx.Response] = []

    async def one() -> None:
        answers.append(await post_job(service, token, "order-3"))

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            for _ in range(10):  # all ten are sent before the first answer can arrive
                nursery.start_soon(one)
    created = [
        r for r in answers if r.status_code == 202 and "idempotent-replayed" not in r.headers
    ]
    assert len(created) == 1, [(r.status_code, r.text) for r in answers]
    job_id = created[0].json()["job"]["id"]
    for answer in answers:
        if answer.status_code == 409:
            assert_problem(answer, 409, "IDEMPOTENCY_KEY_IN_USE")
        else:
            assert answer.status_code == 202, answer.text
            assert answer.json()["job"]["id"] == job_id
    assert len(answers) == 10
    assert await job_ids(service, token) == [job_id]
    [charge] = await charges(service, token)
    assert charge["ref_id"] == job_id
    assert await balance(service, token) == WELCOME - COST
    # Once the first request is done, every retry is a replay.
    late = await post_job(service, token, "order-3")
    assert late.headers["idempotent-replayed"] == "true"
    assert late.json()["job"]["id"] == job_id


async def test_a_bad_key_is_refused_before_anything_is_written(service: Service) -> None:
    user = await register(service.client, "long@example.com")
    token = user["token"]
    for key in ("k" * 256, "clé".encode()):
        refused = await post_job(service, token, key)
        problem = assert_problem(refused, 400, "VALIDATION_ERROR")
        assert [e["field"] for e in problem["errors"]] == ["Idempotency-Key"]
    assert await job_ids(service, token) == []
    assert await charges(service, token) == []
    longest = await post_job(service, token, "k" * 255)
    assert longest.status_code == 202, longest.text


async def test_keys_are_scoped_per_user(service: Service) -> None:
    alice = await register(service.client, "alice@example.com")
    bob = await register(service.client, "bob@example.com")
    theirs = [await post_job(service, u["token"], "shared-key") for u in (alice, bob)]
    assert [r.status_code for r in theirs] == [202, 202]
    assert not any("idempotent-replayed" in r.headers for r in theirs)
    alice_job, bob_job = (r.json()["job"] for r in theirs)
    assert alice_job["id"] != bob_job["id"]
    assert (alice_job["user_id"], bob_job["user_id"]) == (alice["user"]["id"], bob["user"]["id"])
    for user, job in ((alice, alice_job), (bob, bob_job)):
        assert await job_ids(service, user["token"]) == [job["id"]]
        assert [c["ref_id"] for c in await charges(service, user["token"])] == [job["id"]]


async def test_a_refused_payment_releases_the_key_for_a_retry_after_a_top_up(
    service: Service,
) -> None:
    user = await register(service.client, "poor@example.com")
    token = user["token"]
    pricey = {**BODY, "cost": WELCOME + 50}
    refused = await post_job(service, token, "order-4", pricey)
    problem = assert_problem(refused, 402, "INSUFFICIENT_CREDITS")
    assert (problem["required"], problem["available"]) == (WELCOME + 50, WELCOME)
    assert await job_ids(service, token) == []
    async with open_deps(service.settings, migrate=False) as deps:
        await grant_credits(
            deps.store,
            amount=100,
            reason="top-up",
            granted_by="test",
            user_id=uuid.UUID(user["user"]["id"]),
        )
    retried = await post_job(service, token, "order-4", pricey)
    assert retried.status_code == 202, retried.text
    assert "idempotent-replayed" not in retried.headers
    assert retried.json()["charged"] == WELCOME + 50
    assert await balance(service, token) == WELCOME + 100 - (WELCOME + 50)
    assert len(await charges(service, token)) == 1


async def test_an_expired_key_is_a_new_key(service: Service) -> None:
    user = await register(service.client, "expiry@example.com")
    token = user["token"]
    first = await post_job(service, token, "order-5")
    assert first.status_code == 202, first.text
    async with open_deps(service.settings, migrate=False) as deps:
        past = datetime.now(UTC) - timedelta(seconds=1)
        aged = await deps.store.execute(JQ.age_key, uuid.UUID(user["user"]["id"]), "order-5", past)
        assert aged == 1
    # 24 h later the key means nothing: even another body is a new request.
    other = await post_job(service, token, "order-5", {**BODY, "payload": {"prompt": "a dog"}})
    assert other.status_code == 202, other.text
    assert "idempotent-replayed" not in other.headers
    assert other.json()["job"]["id"] != first.json()["job"]["id"]
    assert len(await charges(service, token)) == 2
    async with open_deps(service.settings, migrate=False) as deps:
        later = datetime.now(UTC) + KEY_TTL + timedelta(minutes=1)
        assert await purge_idempotency_keys(deps.store, later) == 1
