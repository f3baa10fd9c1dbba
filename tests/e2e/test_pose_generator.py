"""The Pose Generator over HTTP against the running service (SPEC §8.2), on SQLite and
PostgreSQL: projects, a gallery generation end to end (exports, export.zip, one progress
event per pose, the charge), partial and total failure refunds, resuming, ownership,
validation and the pose-request state machine.

Provider failures are scripted with `ScriptedRenderers`, handed to `make_app`: it wraps the
service's real providers, counts pose calls, fails the poses of chosen library poses with
`Permanent` and can raise one `Transient` after a number of poses (a crash mid-job).
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio
from PIL import Image

from lumiku.apps.pose_generator import library
from lumiku.apps.pose_generator.app import make_app
from lumiku.apps.registry import Registry
from lumiku.db.queries import build_queries
from lumiku.errors import Permanent, Transient
from lumiku.providers.base import BackgroundRequest, PoseRequest, PoseResult, Report, no_report
from lumiku.storage.base import new_key
from lumiku.supervisor import open_deps
from tests.e2e.harness import (
    Service,
    bearer,
    make_settings,
    register,
    running_service,
)
from tests.e2e.wsclient import connect

if TYPE_CHECKING:
    from lumiku.deps import Deps

API = "/api/apps/pose-generator"
POSES = ("relaxed-stand", "hands-in-pockets", "arms-crossed")

# An avatar of the Avatar Creator's tables, written directly: that app is built elsewhere.
AVATAR_SQL = build_queries(
    """
-- name: insert_avatar_project
INSERT INTO avatar_projects (id, user_id, name, description, created_at, updated_at)
VALUES ($1, $2, 'Avatars', '', $3, $3)

-- name: insert_avatar
INSERT INTO avatars (id, user_id, project_id, name, source_type, image_key, thumbnail_key,
                     width, height, persona, attributes, created_at, updated_at)
VALUES ($1, $2, $3, 'Me', 'upload', $4, $4, 512, 512, $5, $5, $6, $6)
""",
    source="test avatars",
)


@attrs.define
class ScriptedRenderers:
    """The service's providers, with calls counted and failures scripted."""

    deps: Deps | None = None
    failing_prompts: set[str] = attrs.field(factory=set)
    transient_after: int | None = None  # raise one Transient when this many poses succeeded
    pose_calls: list[str] = attrs.field(factory=list)
    succeeded: int = 0

    async def pose(self, request: PoseRequest, report: Report = no_report) -> PoseResult:
        assert self.deps is not None
        self.pose_calls.append(request.prompt)
        if self.transient_after is not None and self.succeeded == self.transient_after:
            self.transient_after = None
            raise Transient("the provider hiccuped")
        if request.prompt in self.failing_prompts:
            raise Permanent("content rejected")
        result = await self.deps.providers.pose(request, report)
        self.succeeded += 1
        return result

    async def background(self, request: BackgroundRequest, report: Report = no_report) -> bytes:
        assert self.deps is not None
        return await self.deps.providers.background(request, report)


def renderers_of(scripted: ScriptedRenderers) -> Any:
    def pick(deps: Deps) -> ScriptedRenderers:
        scripted.deps = deps
        return scripted

    return pick


@pytest.fixture
def scripted() -> ScriptedRenderers:
    return ScriptedRenderers()


@pytest.fixture
async def service(
    tmp_path: Path, database_url: str, scripted: ScriptedRenderers
) -> AsyncIterator[Service]:
    env = {
        "LUMIKU_DATABASE_URL": database_url,
        "LUMIKU_JOBS_POLL_S": "0.05",
        "LUMIKU_JOBS_BACKOFF_S": "0.05",
        "LUMIKU_CREDITS_WELCOME_BONUS": "1000",
    }
    registry = Registry([make_app(renderers_of(scripted))])
    with trio.fail_after(120):
        async with running_service(make_settings(tmp_path, env), apps=registry) as svc:
            yield svc


def png(size: int = 512, color: tuple[int, int, int] = (200, 120, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, "PNG")
    return buffer.getvalue()


async def make_avatar(service: Service, user: dict[str, Any]) -> str:
    user_id = uuid.UUID(user["user"]["id"])
    async with open_deps(service.settings, migrate=False) as deps:
        key = new_key("avatar-creator", user_id, "png")
        await deps.storage.put(key, png(), "image/png")
        from datetime import UTC, datetime

        now = datetime.now(UTC)
        project_id, avatar_id = uuid.uuid4(), uuid.uuid4()
        async with deps.store.transaction() as tx:
            await tx.execute(AVATAR_SQL.insert_avatar_project, project_id, user_id, now)
            await tx.execute(
                AVATAR_SQL.insert_avatar, avatar_id, user_id, project_id, key.value, {}, now
            )
    return str(avatar_id)


async def make_project(service: Service, user: dict[str, Any]) -> str:
    avatar_id = await make_avatar(service, user)
    response = await service.client.post(
        f"{API}/projects",
        json={"name": "Shoot", "avatar_id": avatar_id},
        headers=bearer(user["token"]),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["project"]["id"])


async def wait_generation(service: Service, token: str, generation_id: str) -> dict[str, Any]:
    with trio.fail_after(60):
        while True:
            response = await service.client.get(
                f"{API}/generations/{generation_id}", headers=bearer(token)
            )
            body: dict[str, Any] = response.json()["generation"]
            if body["status"] in ("succeeded", "failed", "cancelled"):
                return body
            await trio.sleep(0.05)


async def balance(service: Service, token: str) -> int:
    response = await service.client.get("/api/credits/balance", headers=bearer(token))
    return int(response.json()["balance"])


def gallery(project_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "project_id": project_id,
        "generation_type": "gallery",
        "selected_pose_ids": list(POSES),
        "batch_size": 2,
        "use_background_changer": True,
        "background_mode": "solid_color",
        "background_color": "#336699",
        "output_formats": ["instagram_feed", "original"],
        **extra,
    }


async def test_gallery_generation_end_to_end(service: Service, scripted: ScriptedRenderers) -> None:
    user = await register(service.client, "gallery@example.com")
    token = user["token"]
    project_id = await make_project(service, user)
    before = await balance(service, token)
    response = await service.client.post(
        f"{API}/generate", json=gallery(project_id), headers=bearer(token)
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["total_poses"] == 6
    assert accepted["credit_charged"] == 6 * 40
    assert accepted["estimated_completion_s"] > 0
    done = await wait_generation(service, token, accepted["generation_id"])
    assert done["status"] == "succeeded"
    assert done["result"] == {
        "generation_id": accepted["generation_id"],
        "total": 6,
        "succeeded": 6,
        "failed": 0,
    }
    assert await balance(service, token) == before - 240
    assert len(scripted.pose_calls) == 6

    results = await service.client.get(
        f"{API}/generations/{accepted['generation_id']}/results", headers=bearer(token)
    )
    poses = results.json()["poses"]
    assert [p["variation_key"] for p in poses] == [f"{p}-v{i}" for p in POSES for i in (1, 2)]
    for pose in poses:
        assert pose["status"] == "succeeded"
        assert sorted(pose["exports"]) == ["instagram_feed", "original"]
        assert pose["skeleton_url"].startswith("/files/")
    served = await service.client.get(poses[0]["exports"]["instagram_feed"])
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/jpeg"

    archive = await service.client.get(
        f"{API}/generations/{accepted['generation_id']}/export.zip", headers=bearer(token)
    )
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as opened:
        assert opened.testzip() is None
        names = sorted(opened.namelist())
        feed = opened.read(f"{POSES[0]}-v1/instagram_feed.jpg")
    assert len(names) == 12
    assert Image.open(io.BytesIO(feed)).size == (1080, 1080)
    only = await service.client.get(
        f"{API}/generations/{accepted['generation_id']}/export.zip?formats=original",
        headers=bearer(token),
    )
    with zipfile.ZipFile(io.BytesIO(only.content)) as opened:
        expected = sorted(f"{p['variation_key']}/original.png" for p in poses)
        assert sorted(opened.namelist()) == expected

    async with connect(f"{service.ws_url}?token={token}") as ws:
        assert json.loads(await ws.receive())["type"] == "ready"
        subscribe = {"type": "subscribe", "job_id": accepted["job_id"], "after_seq": 0}
        await ws.send(json.dumps(subscribe))
        received = []
        with trio.fail_after(10):
            while not received or received[-1]["type"] != "generation:completed":
                received.append(json.loads(await ws.receive()))
    progress = [e for e in received if e["type"] == "generation:progress"]
    assert [e["data"]["completed"] for e in progress] == [1, 2, 3, 4, 5, 6]
    assert progress[0]["data"]["stage"] == f"pose {POSES[0]}-v1"

    stats = (await service.client.get(f"{API}/stats", headers=bearer(token))).json()["stats"]
    assert stats["poses_succeeded"] == 6
    assert stats["credits_charged"] == 240


async def test_failed_poses_are_refunded_and_all_failed_fails(
    service: Service, scripted: ScriptedRenderers
) -> None:
    user = await register(service.client, "partial@example.com")
    token = user["token"]
    project_id = await make_project(service, user)
    before = await balance(service, token)
    scripted.failing_prompts = {library.get("arms-crossed").name}
    response = await service.client.post(
        f"{API}/generate", json=gallery(project_id), headers=bearer(token)
    )
    accepted = response.json()
    done = await wait_generation(service, token, accepted["generation_id"])
    assert done["status"] == "succeeded"
    assert done["result"]["failed"] == 2
    assert done["refunded"] == 2 * 40  # the background add-on of the failed poses included
    assert await balance(service, token) == before - 4 * 40
    results = await service.client.get(
        f"{API}/generations/{accepted['generation_id']}/results", headers=bearer(token)
    )
    failed = [p for p in results.json()["poses"] if p["status"] == "failed"]
    assert [p["variation_key"] for p in failed] == ["arms-crossed-v1", "arms-crossed-v2"]
    assert failed[0]["error"]["code"] == "PERMANENT"
    assert failed[0]["exports"] == {}

    scripted.failing_prompts = {library.get(p).name for p in POSES}
    before = await balance(service, token)
    response = await service.client.post(
        f"{API}/generate",
        json=gallery(
            project_id, use_background_changer=False, background_mode=None, background_color=None
        ),
        headers=bearer(token),
    )
    assert response.status_code == 202, response.text
    assert response.json()["credit_charged"] == 6 * 30
    done = await wait_generation(service, token, response.json()["generation_id"])
    assert done["status"] == "failed"
    assert done["refunded"] == 6 * 30
    assert await balance(service, token) == before
    results = await service.client.get(
        f"{API}/generations/{response.json()['generation_id']}/results", headers=bearer(token)
    )
    assert [p["status"] for p in results.json()["poses"]] == ["failed"] * 6


async def test_a_resumed_job_renders_only_the_remaining_variations(
    service: Service, scripted: ScriptedRenderers
) -> None:
    user = await register(service.client, "resume@example.com")
    token = user["token"]
    project_id = await make_project(service, user)
    scripted.transient_after = 4
    response = await service.client.post(
        f"{API}/generate", json=gallery(project_id), headers=bearer(token)
    )
    accepted = response.json()
    done = await wait_generation(service, token, accepted["generation_id"])
    assert done["status"] == "succeeded"
    # 4 poses, the call that failed, then only the 2 variations left
    assert len(scripted.pose_calls) == 4 + 1 + 2
    job = await service.client.get(f"/api/jobs/{accepted['job_id']}", headers=bearer(token))
    assert job.json()["job"]["attempt"] == 2
    results = await service.client.get(
        f"{API}/generations/{accepted['generation_id']}/results", headers=bearer(token)
    )
    assert len(results.json()["poses"]) == 6
    assert all(p["status"] == "succeeded" for p in results.json()["poses"])
    assert done["refunded"] == 0
