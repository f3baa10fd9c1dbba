"""Issue 5 acceptance: the Pose Generator, the Hugging Face provider behind its circuit
breaker and the job queue together, against a fake Inference API (a real HTTP server on a
loopback port, `FakeInference`), on SQLite and PostgreSQL.

Permanent answers (400) fail only their variations and refund exactly their cost (the
background add-on included); all of them failing fails the job with a full refund; a model
that is loading (503 + `estimated_time`) and a rate limit (429 + `Retry-After`) are retried
no sooner than the provider asked; five consecutive 500s open the breaker, which holds the
queued jobs, degrades the app's health, and lets one probe through after the reset time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from lumiku.apps.pose_generator import library
from lumiku.apps.pose_generator.app import make_app
from lumiku.apps.registry import Registry
from tests.e2e.harness import Service, bearer, make_settings, register, running_service
from tests.e2e.test_pose_generator import (
    API,
    POSES,
    balance,
    gallery,
    make_project,
    png,
    wait_generation,
)
from tests.unit.providers.fake_inference import FakeInference, Recorded, Reply

IMAGE = Reply.image(png(512, (30, 160, 90)))
LOADING_S = 2.0
RETRY_AFTER_S = 1
RESET_S = 2.0


@attrs.define
class Setup:
    service: Service
    fake: FakeInference


@pytest.fixture
async def setup(tmp_path: Path, database_url: str, nursery: trio.Nursery) -> AsyncIterator[Setup]:
    fake = FakeInference([IMAGE])
    base_url = await fake.start(nursery)
    env = {
        "LUMIKU_DATABASE_URL": database_url,
        "LUMIKU_JOBS_POLL_S": "0.05",
        "LUMIKU_JOBS_BACKOFF_S": "0.05",
        "LUMIKU_CREDITS_WELCOME_BONUS": "1000",
        "LUMIKU_RATELIMIT_GENERATE": "100/1m",
        "LUMIKU_PROVIDERS_POSE": "huggingface",
        "LUMIKU_HUGGINGFACE_BASE_URL": base_url,
        "LUMIKU_HUGGINGFACE_POSE_MODEL": "org/pose-xl",
        "LUMIKU_PROVIDERS_BREAKER_FAILURES": "5",
        "LUMIKU_PROVIDERS_BREAKER_RESET_S": str(RESET_S),
        "LUMIKU_PROVIDERS_CALL_TIMEOUT_S": "10",
    }
    registry = Registry([make_app()])
    with trio.fail_after(120):
        async with running_service(make_settings(tmp_path, env), apps=registry) as service:
            yield Setup(service, fake)


def pose_of(recorded: Recorded) -> str:
    """The library pose a request draws: its prompt starts with the pose's name."""
    names = [library.get(p).name for p in POSES]
    (name,) = [n for n in names if recorded.inputs.startswith(f"{n},")]
    return name


async def submit(service: Service, token: str, body: dict[str, Any]) -> dict[str, Any]:
    response = await service.client.post(f"{API}/generate", json=body, headers=bearer(token))
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


async def job_of(service: Service, token: str, job_id: str) -> dict[str, Any]:
    response = await service.client.get(f"/api/jobs/{job_id}", headers=bearer(token))
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()["job"]
    return job


def one_text_pose(project_id: str) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "generation_type": "text",
        "text_prompt": "a skill showcase pose",
        "variation_count": 1,
    }


async def test_permanently_failing_poses_are_refunded_with_their_background(
    setup: Setup,
) -> None:
    service, fake = setup.service, setup.fake
    refused = library.get("arms-crossed").name

    def respond(recorded: Recorded) -> Reply:
        if pose_of(recorded) == refused:
            return Reply.json(400, {"error": "content policy violation"})
        return IMAGE

    fake.respond = respond
    user = await register(service.client, "partial-http@example.com")
    token = user["token"]
    project_id = await make_project(service, user)
    before = await balance(service, token)
    accepted = await submit(service, token, gallery(project_id))
    per_pose = accepted["credit_charged"] // accepted["total_poses"]
    assert per_pose == 40  # 30 for the pose + 10 for the background add-on
    done = await wait_generation(service, token, accepted["generation_id"])

    assert done["status"] == "succeeded"
    assert done["result"]["succeeded"] == 4
    assert done["result"]["failed"] == 2
    assert done["refunded"] == 2 * per_pose
    assert await balance(service, token) == before - 4 * per_pose
    job = await job_of(service, token, accepted["job_id"])
    assert job["status"] == "succeeded"
    assert job["refunded"] == 2 * per_pose
    # every variation asked once: a Permanent answer is not retried
    assert sorted(pose_of(r) for r in fake.requests) == sorted(
        library.get(p).name for p in POSES for _ in (1, 2)
    )
    assert {r.path for r in fake.requests} == {"/models/org/pose-xl"}
    results = await service.client.get(
        f"{API}/generations/{accepted['generation_id']}/results", headers=bearer(token)
    )
    by_status: dict[str, list[str]] = {}
    for pose in results.json()["poses"]:
        by_status.setdefault(pose["status"], []).append(pose["variation_key"])
    assert sorted(by_status["failed"]) == ["arms-crossed-v1", "arms-crossed-v2"]
    assert len(by_status["succeeded"]) == 4
    assert all(not k.startswith("arms-crossed") for k in by_status["succeeded"])


async def test_every_pose_refused_fails_the_job_with_a_full_refund(setup: Setup) -> None:
    service, fake = setup.service, setup.fake
    fake.script(Reply.json(400, {"error": "bad request"}))
    user = await register(service.client, "all-failed-http@example.com")
    token = user["token"]
    project_id = await make_project(service, user)
    before = await balance(service, token)
    accepted = await submit(service, token, gallery(project_id))
    assert accepted["credit_charged"] == 6 * 40
    done = await wait_generation(service, token, accepted["generation_id"])

    assert done["status"] == "failed"
    assert done["refunded"] == 6 * 40
    assert await balance(service, token) == before
    job = await job_of(service, token, accepted["job_id"])
    assert job["status"] == "failed"
    assert job["refunded"] == 6 * 40
    assert job["attempt"] == 1  # Permanent: not retried
    assert len(fake.requests) == 6
    results = await service.client.get(
        f"{API}/generations/{accepted['generation_id']}/results", headers=bearer(token)
    )
    assert [p["status"] for p in results.json()["poses"]] == ["failed"] * 6


async def test_a_loading_model_is_retried_after_its_estimated_time(setup: Setup) -> None:
    service, fake = setup.service, setup.fake
    loading = {"error": "Model org/pose-xl is currently loading", "estimated_time": LOADING_S}
    fake.script(Reply.json(503, loading), IMAGE)
    user = await register(service.client, "loading-http@example.com")
    token = user["token"]
    project_id = await make_project(service, user)
    accepted = await submit(service, token, one_text_pose(project_id))
    done = await wait_generation(service, token, accepted["generation_id"])

    assert done["status"] == "succeeded"
    first, second = fake.requests
    assert second.at - first.at >= LOADING_S
    assert second.json() == first.json()  # the same variation asked again
    job = await job_of(service, token, accepted["job_id"])
    assert job["status"] == "succeeded"
    assert job["refunded"] == 0
    health = await service.client.get(f"{API}/health")
    assert health.status_code == 200  # a loading model is no breaker failure


async def test_a_rate_limit_is_retried_after_retry_after_without_an_attempt(
    setup: Setup,
) -> None:
    service, fake = setup.service, setup.fake
    limited = Reply.json(429, {"error": "rate limited"}, ("Retry-After", str(RETRY_AFTER_S)))
    fake.script(limited, IMAGE)
    user = await register(service.client, "ratelimit-http@example.com")
    token = user["token"]
    project_id = await make_project(service, user)
    accepted = await submit(service, token, one_text_pose(project_id))
    done = await wait_generation(service, token, accepted["generation_id"])

    assert done["status"] == "succeeded"
    first, second = fake.requests
    assert second.at - first.at >= RETRY_AFTER_S
    job = await job_of(service, token, accepted["job_id"])
    assert job["status"] == "succeeded"
    assert job["attempt"] == 1  # the rate-limited run was not counted


async def wait_requests(fake: FakeInference, count: int) -> None:
    with trio.fail_after(30):
        while len(fake.requests) < count:
            await trio.sleep(0.01)


def breaker_moves(service: Service) -> list[tuple[str, str]]:
    return [
        (line["old"], line["new"])
        for line in service.log_lines()
        if line.get("event") == "provider.breaker"
    ]


async def test_the_breaker_opens_holds_queued_jobs_and_one_probe_closes_it(
    setup: Setup,
) -> None:
    service, fake = setup.service, setup.fake
    failing = Reply.json(500, {"error": "internal error"})
    fake.script(*[failing] * 5, IMAGE)
    user = await register(service.client, "breaker-http@example.com")
    token = user["token"]
    project_id = await make_project(service, user)
    before = await balance(service, token)

    # the first job uses its 3 attempts on 3 failures; the second's 2 failures open it
    exhausted = await submit(service, token, one_text_pose(project_id))
    done = await wait_generation(service, token, exhausted["generation_id"])
    assert done["status"] == "failed"
    assert done["refunded"] == exhausted["credit_charged"]
    assert len(fake.requests) == 3
    held = await submit(service, token, one_text_pose(project_id))
    await wait_requests(fake, 5)
    opened_at = fake.requests[4].at

    # open: a new generation stays queued, health is degraded, nothing reaches the fake
    queued = await submit(service, token, one_text_pose(project_id))
    health = await service.client.get(f"{API}/health")
    assert health.status_code == 503
    assert health.json()["status"] == "degraded"
    assert health.json()["providers"]["providers"]["huggingface"]["state"] == "open"
    for accepted in (held, queued):
        assert (await job_of(service, token, accepted["job_id"]))["status"] == "queued"
    assert len(fake.requests) == 5

    # after the reset time exactly one probe goes out; it succeeds and closes the breaker
    await wait_requests(fake, 6)
    assert fake.requests[5].at - opened_at >= RESET_S
    for accepted in (held, queued):
        done = await wait_generation(service, token, accepted["generation_id"])
        assert done["status"] == "succeeded"
        assert (await job_of(service, token, accepted["job_id"]))["status"] == "succeeded"
    assert len(fake.requests) == 7
    assert breaker_moves(service) == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    health = await service.client.get(f"{API}/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    charged = held["credit_charged"] + queued["credit_charged"]
    assert await balance(service, token) == before - charged
