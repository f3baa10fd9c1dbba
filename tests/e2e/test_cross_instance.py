"""Two instances on one PostgreSQL database: a submission through one wakes the other's
workers, and a running job is cancelled through the instance that does not run it —
both by NOTIFY, long before the poll interval or the next heartbeat."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import trio

from lumiku.apps.registry import App, Registry
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from tests.e2e.harness import Service, bearer, make_settings, register, running_service

COST = 10
DELIVERED = 4


@attrs.define
class Holds:
    """Which instance runs which job; the jobs hold until released."""

    ran_on: dict[str, str] = attrs.field(factory=dict)
    started: trio.Event = attrs.field(factory=trio.Event)
    release: trio.Event = attrs.field(factory=trio.Event)

    def kind(self, label: str) -> JobKind:
        async def hold(ctx: JobContext) -> Outcome:
            self.ran_on[ctx.job_id] = label
            ctx.deliver(DELIVERED)
            self.started.set()
            await self.release.wait()
            return Outcome({"on": label})

        return JobKind("demo.hold", hold, concurrency=1)


@contextlib.asynccontextmanager
async def two_instances(
    tmp_path: Path, postgres_url: str, holds: Holds
) -> AsyncIterator[tuple[Service, Service]]:
    """Instances "a" and "b" sharing the database and the token secret. Workers poll every
    60 s and heartbeats come every 20 s, so only a signal can act within the test's bounds."""
    env = {
        "LUMIKU_DATABASE_URL": postgres_url,
        "LUMIKU_AUTH_JWT_SECRET": "cross-instance-test-secret-0123456789abcdef",
        "LUMIKU_JOBS_POLL_S": "60",
        "LUMIKU_JOBS_LEASE_S": "60",
    }
    services = []
    with trio.fail_after(60):
        async with contextlib.AsyncExitStack() as stack:
            for label in ("a", "b"):
                registry = Registry([App("demo", "Demo", kinds=(holds.kind(label),))])
                settings = make_settings(tmp_path / label, env)
                services.append(
                    await stack.enter_async_context(running_service(settings, apps=registry))
                )
            yield services[0], services[1]
            holds.release.set()


async def submit(service: Service, token: str) -> dict[str, Any]:
    response = await service.client.post(
        "/api/_test/jobs",
        json={"app": "demo", "kind": "demo.hold", "cost": COST},
        headers=bearer(token),
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()["job"]
    return job


async def job_status(service: Service, token: str, job_id: str) -> dict[str, Any]:
    response = await service.client.get(f"/api/jobs/{job_id}", headers=bearer(token))
    job: dict[str, Any] = response.json()["job"]
    return job


async def test_a_running_job_is_cancelled_through_the_other_instance_within_a_second(
    tmp_path: Path, postgres_url: str
) -> None:
    holds = Holds()
    async with two_instances(tmp_path, postgres_url, holds) as (a, b):
        user = await register(a.client, "cancel@example.com")
        job = await submit(a, user["token"])
        with trio.fail_after(10):
            await holds.started.wait()
        runner = holds.ran_on[job["id"]]
        other = b if runner == "a" else a
        asked_at = trio.current_time()
        response = await other.client.post(
            f"/api/jobs/{job['id']}/cancel", headers=bearer(user["token"])
        )
        assert response.status_code == 202, response.text
        with trio.fail_after(10):
            while (done := await job_status(other, user["token"], job["id"]))["status"] not in (
                "cancelled",
                "succeeded",
                "failed",
            ):
                await trio.sleep(0.02)
        took_s = trio.current_time() - asked_at
        balance = await other.client.get("/api/credits/balance", headers=bearer(user["token"]))
    assert done["status"] == "cancelled"
    assert took_s < 1.0, f"cancelled after {took_s:.2f} s"
    assert done["refunded"] == COST - DELIVERED  # the handler delivered work worth 4
    assert balance.json()["balance"] == user["balance"] - DELIVERED


async def test_a_submission_wakes_the_other_instances_workers(
    tmp_path: Path, postgres_url: str
) -> None:
    holds = Holds()
    async with two_instances(tmp_path, postgres_url, holds) as (a, b):
        user = await register(a.client, "wake@example.com")
        first = await submit(b, user["token"])
        with trio.fail_after(10):
            await holds.started.wait()
        # One slot per instance: the instance running the first job cannot take the second,
        # so the other one must, and it polls only every 60 s.
        busy = holds.ran_on[first["id"]]
        through = a if busy == "a" else b
        second = await submit(through, user["token"])
        with trio.fail_after(10):
            while second["id"] not in holds.ran_on:
                await trio.sleep(0.02)
    assert holds.ran_on[second["id"]] != busy
