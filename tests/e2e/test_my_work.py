"""The cross-app routes (SPEC §17) over HTTP with both built-in apps, on SQLite and
PostgreSQL: `/api/apps` with its cards, My Work (`/api/generations`: newest first across
apps, signed outputs, filters, cursor, delete), and `/api/stats/dashboard`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from lumiku.apps.avatar_creator.app import make_app as avatar_creator
from lumiku.apps.pose_generator.app import make_app as pose_generator
from lumiku.apps.registry import Registry
from lumiku.deps import Deps
from lumiku.providers.base import BackgroundRequest, PoseRequest, PoseResult, Report, no_report
from tests.e2e.harness import STRONG_PASSWORD, Service, bearer, make_settings, running_service

AVATAR = "/api/apps/avatar-creator"
POSE = "/api/apps/pose-generator"


@attrs.define
class GatedRenderers:
    """The service's pose providers; while `gate` is set, calls wait for it."""

    deps: Deps | None = None
    gate: trio.Event | None = None

    async def pose(self, request: PoseRequest, report: Report = no_report) -> PoseResult:
        assert self.deps is not None
        if self.gate is not None:
            await self.gate.wait()
        return await self.deps.providers.pose(request, report)

    async def background(self, request: BackgroundRequest, report: Report = no_report) -> bytes:
        assert self.deps is not None
        if self.gate is not None:
            await self.gate.wait()
        return await self.deps.providers.background(request, report)


@pytest.fixture
def renderers() -> GatedRenderers:
    return GatedRenderers()


@pytest.fixture
async def service(
    tmp_path: Path, database_url: str, renderers: GatedRenderers
) -> AsyncIterator[Service]:
    def pick(deps: Deps) -> GatedRenderers:
        renderers.deps = deps
        return renderers

    env = {
        "LUMIKU_DATABASE_URL": database_url,
        "LUMIKU_JOBS_POLL_S": "0.05",
        "LUMIKU_CREDITS_WELCOME_BONUS": "1000",
        "LUMIKU_RATELIMIT_ENABLED": "false",
    }
    registry = Registry([pose_generator(pick), avatar_creator()])
    with trio.fail_after(120):
        async with running_service(make_settings(tmp_path, env), apps=registry) as svc:
            yield svc


async def signup(service: Service, email: str) -> str:
    response = await service.client.post(
        "/api/auth/register", json={"email": email, "password": STRONG_PASSWORD}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["token"])


async def login(service: Service, email: str) -> str:
    response = await service.client.post(
        "/api/auth/login", json={"email": email, "password": STRONG_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


async def get(service: Service, token: str, path: str, **params: Any) -> Any:
    response = await service.client.get(path, params=params, headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


async def wait_done(service: Service, token: str, path: str) -> dict[str, Any]:
    with trio.fail_after(60):
        while True:
            generation: dict[str, Any] = (await get(service, token, path))["generation"]
            if generation["status"] in ("succeeded", "failed", "cancelled"):
                assert generation["status"] == "succeeded", generation
                return generation
            await trio.sleep(0.05)


async def make_avatar(service: Service, token: str, project_id: str, name: str) -> dict[str, Any]:
    response = await service.client.post(
        f"{AVATAR}/projects/{project_id}/avatars/generate",
        json={"name": name, "prompt": "a friendly portrait with warm light", "width": 512},
        headers=bearer(token),
    )
    assert response.status_code == 202, response.text
    generation_id = response.json()["generation"]["id"]
    return await wait_done(service, token, f"{AVATAR}/generations/{generation_id}")


async def submit_poses(service: Service, token: str, project_id: str) -> str:
    body = {
        "project_id": project_id,
        "generation_type": "gallery",
        "selected_pose_ids": ["relaxed-stand", "arms-crossed"],
        "batch_size": 1,
        "output_formats": ["original"],
    }
    response = await service.client.post(f"{POSE}/generate", json=body, headers=bearer(token))
    assert response.status_code == 202, response.text
    return str(response.json()["generation_id"])


async def projects(service: Service, token: str) -> tuple[str, str]:
    """An avatar project and a pose project whose subject is a generated avatar."""
    response = await service.client.post(
        f"{AVATAR}/projects", json={"name": "Team"}, headers=bearer(token)
    )
    assert response.status_code == 201, response.text
    avatar_project = str(response.json()["project"]["id"])
    avatar = await make_avatar(service, token, avatar_project, "Subject")
    response = await service.client.post(
        f"{POSE}/projects",
        json={"name": "Shoot", "avatar_id": avatar["avatar"]["id"]},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    return avatar_project, str(response.json()["project"]["id"])


def stored_bytes(service: Service, user_id: str) -> int:
    """The size of every file stored for the user, whichever app wrote it."""
    root = Path(service.settings.storage.path)
    return sum(
        path.stat().st_size
        for app in ("avatar-creator", "pose-generator")
        for path in (root / app / user_id).rglob("*")
        if path.is_file()
    )


def ids(body: dict[str, Any]) -> list[str]:
    return [g["id"] for g in body["generations"]]


async def test_my_work_lists_both_apps_newest_first_and_deletes(
    service: Service, renderers: GatedRenderers
) -> None:
    token = await signup(service, "work@example.com")
    avatar_project, pose_project = await projects(service, token)
    first = (await get(service, token, "/api/generations"))["generations"][0]["id"]
    poses = await submit_poses(service, token, pose_project)
    await wait_done(service, token, f"{POSE}/generations/{poses}")
    latest = (await make_avatar(service, token, avatar_project, "Latest"))["id"]

    listed = await get(service, token, "/api/generations")
    assert ids(listed) == [latest, poses, first]
    assert [g["app"] for g in listed["generations"]] == [
        "avatar-creator",
        "pose-generator",
        "avatar-creator",
    ]
    assert listed["next_cursor"] is None
    for generation in listed["generations"]:
        assert generation["status"] == "succeeded"
        assert generation["progress"]["percent"] == 100
        assert generation["finished_at"] is not None
        assert generation["thumbnail_url"].startswith("/files/")
        for output in generation["outputs"]:
            download = await service.client.get(output["url"])  # signed: no token
            assert download.status_code == 200
            assert len(download.content) == output["bytes"]
    by_id = {g["id"]: g for g in listed["generations"]}
    assert by_id[latest]["title"] == "Latest"
    assert [o["kind"] for o in by_id[latest]["outputs"]] == ["image"]
    assert [o["kind"] for o in by_id[poses]["outputs"]] == ["pose", "pose"]
    assert by_id[poses]["credit_charged"] == 60
    assert by_id[latest]["credit_charged"] == 10

    # Filters and the cursor.
    assert ids(await get(service, token, "/api/generations", app="pose-generator")) == [poses]
    assert ids(await get(service, token, "/api/generations", status="failed")) == []
    page = await get(service, token, "/api/generations", limit=2)
    assert ids(page) == [latest, poses]
    rest = await get(service, token, "/api/generations", limit=2, cursor=page["next_cursor"])
    assert ids(rest) == [first]
    assert rest["next_cursor"] is None
    assert ids(await get(service, token, "/api/generations/recent")) == [latest, poses, first]
    for bad in ({"cursor": "not-a-cursor"}, {"app": "nope"}, {"status": "done"}):
        refused = await service.client.get("/api/generations", params=bad, headers=bearer(token))
        assert refused.status_code == 400
        assert refused.json()["code"] == "VALIDATION_ERROR"

    # Someone else's is missing; deleting removes the files and the entry.
    stranger = await signup(service, "stranger@example.com")
    other = await service.client.delete(f"/api/generations/{poses}", headers=bearer(stranger))
    assert other.status_code == 404
    assert ids(await get(service, stranger, "/api/generations")) == []
    urls = [o["url"] for o in by_id[poses]["outputs"]] + [by_id[poses]["thumbnail_url"]]
    deleted = await service.client.delete(f"/api/generations/{poses}", headers=bearer(token))
    assert deleted.status_code == 204
    for url in urls:
        assert (await service.client.get(url)).status_code == 404
    assert ids(await get(service, token, "/api/generations")) == [latest, first]
    again = await service.client.delete(f"/api/generations/{poses}", headers=bearer(token))
    assert again.status_code == 404
    avatar_url = by_id[latest]["outputs"][0]["url"]
    deleted = await service.client.delete(f"/api/generations/{latest}", headers=bearer(token))
    assert deleted.status_code == 204
    assert (await service.client.get(avatar_url)).status_code == 404
    assert ids(await get(service, token, "/api/generations")) == [first]

    # A queued or running generation cannot be deleted.
    renderers.gate = trio.Event()
    running = await submit_poses(service, token, pose_project)
    refused = await service.client.delete(f"/api/generations/{running}", headers=bearer(token))
    assert refused.status_code == 409
    assert refused.json()["code"] == "GENERATION_RUNNING"
    active = await get(service, token, "/api/generations", app="pose-generator")
    assert active["generations"][0]["status"] in ("queued", "running")
    renderers.gate.set()
    await wait_done(service, token, f"{POSE}/generations/{running}")

    # Nor one with a new background on its way for one of its poses.
    results = await get(service, token, f"{POSE}/generations/{running}/results")
    renderers.gate = trio.Event()
    change = await service.client.post(
        f"{POSE}/poses/{results['poses'][0]['id']}/background",
        json={"background_mode": "solid_color", "background_color": "#ff0000"},
        headers=bearer(token),
    )
    assert change.status_code == 202, change.text
    refused = await service.client.delete(f"/api/generations/{running}", headers=bearer(token))
    assert refused.status_code == 409
    assert refused.json()["code"] == "GENERATION_RUNNING"
    renderers.gate.set()
    with trio.fail_after(30):
        job_path = f"/api/jobs/{change.json()['job_id']}"
        while (await get(service, token, job_path))["job"]["status"] != "succeeded":
            await trio.sleep(0.05)
    deleted = await service.client.delete(f"/api/generations/{running}", headers=bearer(token))
    assert deleted.status_code == 204


async def test_dashboard_counts_this_month_and_the_previous_login(service: Service) -> None:
    email = "dash@example.com"
    token = await signup(service, email)
    fresh = await get(service, token, "/api/stats/dashboard")
    assert fresh == {
        "credits_balance": 1000,
        "credits_spent_this_month": 0,
        "generations_this_month": 0,
        "projects": 0,
        "storage": {"used_bytes": 0, "quota_bytes": None},
        "last_login_at": None,
    }
    first_login_after = datetime.now(UTC)
    token = await login(service, email)
    assert (await get(service, token, "/api/stats/dashboard"))["last_login_at"] is None
    second_login_after = datetime.now(UTC)
    token = await login(service, email)

    _avatar_project, pose_project = await projects(service, token)
    poses = await submit_poses(service, token, pose_project)
    await wait_done(service, token, f"{POSE}/generations/{poses}")

    body = await get(service, token, "/api/stats/dashboard")
    assert body["credits_spent_this_month"] == 10 + 60
    assert body["credits_balance"] == 1000 - 70
    assert body["generations_this_month"] == 2
    assert body["projects"] == 2
    user_id = (await get(service, token, "/api/auth/profile"))["user"]["id"]
    assert body["storage"] == {"used_bytes": stored_bytes(service, user_id), "quota_bytes": None}
    assert body["storage"]["used_bytes"] > 0
    previous = datetime.fromisoformat(body["last_login_at"])
    assert first_login_after <= previous <= second_login_after


async def test_apps_are_listed_in_order_with_their_cards(service: Service) -> None:
    token = await signup(service, "cards@example.com")
    apps = (await get(service, token, "/api/apps"))["apps"]
    assert [a["id"] for a in apps] == ["avatar-creator", "pose-generator"]
    assert [a["order"] for a in apps] == sorted(a["order"] for a in apps)
    avatar = apps[0]
    assert set(avatar) == {
        "id",
        "name",
        "description",
        "icon",
        "color",
        "order",
        "beta",
        "costs",
        "pricing_url",
    }
    assert avatar["name"] == "Avatar Creator"
    assert avatar["description"]
    assert avatar["costs"] == {"generate": 10, "from_preset": 8, "upload": 2}
    assert apps[1]["costs"] == {"pose": 30, "background": 10}
