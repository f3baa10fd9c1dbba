"""Job routes over HTTP with real workers running a test app, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from lumiku import jobs
from lumiku.accounts.service import create_user
from lumiku.apps.registry import App, Registry
from lumiku.credits.ledger import CreditsPolicy
from lumiku.errors import Permanent
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from lumiku.supervisor import open_deps
from tests.e2e.harness import (
    STRONG_PASSWORD,
    Service,
    bearer,
    make_settings,
    register,
    running_service,
)

COST = 10


async def scripted(ctx: JobContext) -> Outcome:
    step = ctx.payload["step"]
    if step == "hang":
        ctx.deliver(3)  # some work was delivered before the cancellation
        await trio.sleep_forever()
    if step == "permanent":
        raise Permanent("rejected")
    return Outcome({"ok": True})


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    registry = Registry(
        [App("demo", "Demo", kinds=(JobKind("demo.step", scripted, concurrency=4),))]
    )
    env = {
        "LUMIKU_DATABASE_URL": database_url,
        "LUMIKU_JOBS_PER_USER_RUNNING": "1",
        "LUMIKU_JOBS_POLL_S": "0.05",
        "LUMIKU_JOBS_LEASE_S": "3",
    }
    with trio.fail_after(60):
        async with running_service(make_settings(tmp_path, env), apps=registry) as svc:
            yield svc


async def submit(service: Service, user: dict[str, Any], step: str) -> jobs.Job:
    async with open_deps(service.settings, migrate=False) as deps:
        submission = await jobs.submit(
            deps.store,
            user_id=uuid.UUID(user["user"]["id"]),
            tags=(),
            app="demo",
            kind="demo.step",
            payload={"step": step},
            cost=COST,
            policy=CreditsPolicy.from_settings(deps.settings.credits),
        )
    return submission.job


async def wait_status(service: Service, token: str, job_id: str, status: str) -> dict[str, Any]:
    with trio.fail_after(20):
        while True:
            body = (await service.client.get(f"/api/jobs/{job_id}", headers=bearer(token))).json()
            if body["job"]["status"] == status:
                return dict(body["job"])
            await trio.sleep(0.05)


async def test_cancel_queued_and_running_jobs_and_refunds(service: Service) -> None:
    user = await register(service.client, "jobs@example.com")
    auth = bearer(user["token"])
    running = await submit(service, user, "hang")
    await wait_status(service, user["token"], str(running.id), "running")
    queued = await submit(service, user, "ok")  # held back: per_user_running = 1
    busy = (await service.client.get("/health/detailed")).json()
    assert busy["workers"] == {"busy": 1, "total": 4}
    assert busy["queue"]["counts"]["queued"] == 1
    assert busy["queue"]["oldest_queued_age_s"] >= 0
    listed = (await service.client.get("/api/jobs", headers=auth)).json()
    assert {j["id"] for j in listed["jobs"]} == {str(running.id), str(queued.id)}

    cancelled = await service.client.post(f"/api/jobs/{queued.id}/cancel", headers=auth)
    assert cancelled.status_code == 200
    assert cancelled.json()["job"]["status"] == "cancelled"
    assert cancelled.json()["job"]["refunded"] == COST

    stopping = await service.client.post(f"/api/jobs/{running.id}/cancel", headers=auth)
    assert stopping.status_code == 202
    done = await wait_status(service, user["token"], str(running.id), "cancelled")
    assert done["refunded"] == COST - 3  # the handler delivered work worth 3
    balance = (await service.client.get("/api/credits/balance", headers=auth)).json()["balance"]
    assert balance == 100 - 3

    again = await service.client.post(f"/api/jobs/{running.id}/cancel", headers=auth)
    assert again.status_code == 200  # cancelling twice gives the same outcome
    detailed = (await service.client.get("/health/detailed")).json()
    assert detailed["queue"]["counts"]["cancelled"] == 2
    assert detailed["jobs"]["demo.step"]["finished"] == {"cancelled": 2}
    assert detailed["queue"]["oldest_queued_age_s"] is None
    assert detailed["workers"] == {"busy": 0, "total": 4}


async def test_finished_jobs_other_users_and_bad_ids(service: Service) -> None:
    owner = await register(service.client, "owner@example.com")
    other = await register(service.client, "other@example.com")
    job = await submit(service, owner, "ok")
    await wait_status(service, owner["token"], str(job.id), "succeeded")
    finished = await service.client.post(
        f"/api/jobs/{job.id}/cancel", headers=bearer(owner["token"])
    )
    assert finished.status_code == 409
    assert finished.json()["code"] == "JOB_FINISHED"
    assert finished.json()["job"]["status"] == "succeeded"
    for path in (f"/api/jobs/{job.id}", "/api/jobs/not-a-uuid"):
        response = await service.client.get(path, headers=bearer(other["token"]))
        assert response.status_code == 404
    assert (await service.client.get(f"/api/jobs/{job.id}")).status_code == 401


async def test_admin_lists_dead_jobs_and_retries_them(service: Service) -> None:
    user = await register(service.client, "dead@example.com")
    async with open_deps(service.settings, migrate=False) as deps:
        await create_user(deps, email="root@example.com", password=STRONG_PASSWORD, role="admin")
    login = await service.client.post(
        "/api/auth/login", json={"email": "root@example.com", "password": STRONG_PASSWORD}
    )
    admin = bearer(login.json()["token"])
    job = await submit(service, user, "permanent")
    await wait_status(service, user["token"], str(job.id), "failed")
    refused = await service.client.get(
        "/api/admin/jobs?status=failed", headers=bearer(user["token"])
    )
    assert refused.status_code == 403
    dead = (await service.client.get("/api/admin/jobs?status=failed", headers=admin)).json()
    assert [j["id"] for j in dead["jobs"]] == [str(job.id)]
    retried = await service.client.post(f"/api/admin/jobs/{job.id}/retry", headers=admin)
    assert retried.status_code == 202
    await wait_status(service, user["token"], str(job.id), "failed")  # it fails again
    balance = (
        await service.client.get("/api/credits/balance", headers=bearer(user["token"]))
    ).json()
    assert balance["balance"] == 100  # charged again, refunded again
