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
import socket
import uuid
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
import trio
from PIL import Image

from lumiku.accounts.service import create_user
from lumiku.apps.avatar_creator.app import make_app as avatar_creator_app
from lumiku.apps.pose_generator import library
from lumiku.apps.pose_generator.app import make_app
from lumiku.apps.registry import Registry
from lumiku.db.queries import build_queries
from lumiku.errors import Permanent, Transient
from lumiku.providers.base import BackgroundRequest, PoseRequest, PoseResult, Report, no_report
from lumiku.storage.base import new_key
from lumiku.supervisor import open_deps
from tests.e2e.harness import (
    STRONG_PASSWORD,
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
    gate: trio.Event | None = None  # while set, pose calls wait for it

    async def pose(self, request: PoseRequest, report: Report = no_report) -> PoseResult:
        assert self.deps is not None
        self.pose_calls.append(request.prompt)
        if self.gate is not None:
            await self.gate.wait()
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
        "LUMIKU_RATELIMIT_GENERATE": "100/1m",
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


async def generated(service: Service, user: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A finished generation of 3 poses × batch 2 for `user`; its 202 answer."""
    project_id = await make_project(service, user)
    body = gallery(project_id, **extra)
    response = await service.client.post(
        f"{API}/generate", json=body, headers=bearer(user["token"])
    )
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    await wait_generation(service, user["token"], accepted["generation_id"])
    return {**accepted, "project_id": project_id}


async def test_another_users_ids_answer_404(service: Service) -> None:
    owner = await register(service.client, "owner-pose@example.com")
    other = await register(service.client, "other-pose@example.com")
    done = await generated(service, owner)
    results = await service.client.get(
        f"{API}/generations/{done['generation_id']}/results", headers=bearer(owner["token"])
    )
    pose_id = results.json()["poses"][0]["id"]
    project, generation = done["project_id"], done["generation_id"]
    calls = [
        ("GET", f"/projects/{project}", None),
        ("PUT", f"/projects/{project}", {"name": "Mine now"}),
        ("DELETE", f"/projects/{project}", None),
        ("GET", f"/generations/{generation}", None),
        ("GET", f"/generations/{generation}/results", None),
        ("GET", f"/generations/{generation}/export.zip", None),
        (
            "POST",
            f"/poses/{pose_id}/background",
            {"background_mode": "solid_color", "background_color": "#000000"},
        ),
        ("POST", f"/poses/{pose_id}/regenerate-export", {"format": "tiktok"}),
        ("GET", f"/generations/{uuid.uuid4()}", None),
        ("GET", "/projects/not-an-id", None),
    ]
    for method, path, body in calls:
        response = await service.client.request(
            method, f"{API}{path}", json=body, headers=bearer(other["token"])
        )
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["code"] == "NOT_FOUND"
    stolen = await service.client.post(
        f"{API}/generate", json=gallery(project), headers=bearer(other["token"])
    )
    assert stolen.status_code == 404
    avatar_id = await make_avatar(service, owner)
    borrowed = await service.client.post(
        f"{API}/projects",
        json={"name": "Borrowed", "avatar_id": avatar_id},
        headers=bearer(other["token"]),
    )
    assert borrowed.status_code == 400
    assert borrowed.json()["errors"][0]["field"] == "avatar_id"
    listed = await service.client.get(f"{API}/projects", headers=bearer(other["token"]))
    assert listed.json()["projects"] == []
    assert (await service.client.get(f"{API}/projects/{project}")).status_code == 401


async def test_invalid_generations_name_the_field_and_charge_nothing(service: Service) -> None:
    user = await register(service.client, "invalid@example.com")
    token = user["token"]
    project_id = await make_project(service, user)
    before = await balance(service, token)
    text = {"project_id": project_id, "generation_type": "text", "variation_count": 1}
    cases = [
        (gallery(project_id, batch_size=11), "batch_size"),
        (gallery(project_id, selected_pose_ids=["no-such-pose"]), "selected_pose_ids.0"),
        (gallery(project_id, output_formats=["gif"]), "output_formats.0"),
        (gallery(project_id, background_color="blue"), "background_color"),
        ({**text, "text_prompt": "kill the lights"}, "text_prompt"),
        ({**text, "text_prompt": "x"}, "text_prompt"),
    ]
    for body, field in cases:
        response = await service.client.post(f"{API}/generate", json=body, headers=bearer(token))
        assert response.status_code == 400, (body, response.text)
        problem = response.json()
        assert problem["code"] == "VALIDATION_ERROR"
        assert field in [e["field"] for e in problem["errors"]], problem
    assert await balance(service, token) == before
    fine = await service.client.post(
        f"{API}/generate",
        json={**text, "text_prompt": "a skill showcase pose"},
        headers=bearer(token),
    )
    assert fine.status_code == 202, fine.text
    assert fine.json()["credit_charged"] == 30
    done = await wait_generation(service, token, fine.json()["generation_id"])
    assert done["status"] == "succeeded"


async def test_idempotency_key_replays_the_generation(service: Service) -> None:
    user = await register(service.client, "replay@example.com")
    token = user["token"]
    project_id = await make_project(service, user)
    before = await balance(service, token)
    headers = {**bearer(token), "Idempotency-Key": "pose-once"}
    body = gallery(project_id, batch_size=1)
    first = await service.client.post(f"{API}/generate", json=body, headers=headers)
    again = await service.client.post(f"{API}/generate", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["generation_id"] == first.json()["generation_id"]
    assert again.json()["job_id"] == first.json()["job_id"]
    assert await balance(service, token) == before - 3 * 40


async def test_project_delete_waits_for_its_generation_then_removes_files(
    service: Service, scripted: ScriptedRenderers
) -> None:
    user = await register(service.client, "delete@example.com")
    token = user["token"]
    project_id = await make_project(service, user)
    scripted.gate = trio.Event()
    response = await service.client.post(
        f"{API}/generate", json=gallery(project_id, batch_size=1), headers=bearer(token)
    )
    generation_id = response.json()["generation_id"]
    refused = await service.client.delete(f"{API}/projects/{project_id}", headers=bearer(token))
    assert refused.status_code == 409
    assert refused.json()["code"] == "PROJECT_BUSY"
    scripted.gate.set()
    await wait_generation(service, token, generation_id)
    results = await service.client.get(
        f"{API}/generations/{generation_id}/results", headers=bearer(token)
    )
    file_url = results.json()["poses"][0]["exports"]["original"]
    assert (await service.client.get(file_url)).status_code == 200
    deleted = await service.client.delete(f"{API}/projects/{project_id}", headers=bearer(token))
    assert deleted.status_code == 204
    assert (await service.client.get(file_url)).status_code == 404
    gone = await service.client.get(f"{API}/generations/{generation_id}", headers=bearer(token))
    assert gone.status_code == 404


async def test_new_background_and_regenerated_export(service: Service) -> None:
    user = await register(service.client, "background@example.com")
    token = user["token"]
    done = await generated(service, user, batch_size=1)
    results = await service.client.get(
        f"{API}/generations/{done['generation_id']}/results", headers=bearer(token)
    )
    pose = results.json()["poses"][0]
    before = await balance(service, token)
    response = await service.client.post(
        f"{API}/poses/{pose['id']}/background",
        json={"background_mode": "solid_color", "background_color": "#ff0000"},
        headers=bearer(token),
    )
    assert response.status_code == 202, response.text
    assert response.json()["credit_charged"] == 10
    with trio.fail_after(30):
        while True:
            job = await service.client.get(
                f"/api/jobs/{response.json()['job_id']}", headers=bearer(token)
            )
            if job.json()["job"]["status"] == "succeeded":
                break
            assert job.json()["job"]["status"] in ("queued", "running"), job.text
            await trio.sleep(0.05)
    assert await balance(service, token) == before - 10
    after = await service.client.get(
        f"{API}/generations/{done['generation_id']}/results", headers=bearer(token)
    )
    changed = after.json()["poses"][0]
    assert sorted(changed["exports"]) == ["instagram_feed", "original"]
    assert changed["exports"]["original"] != pose["exports"]["original"]
    original = await service.client.get(changed["exports"]["original"])
    pixel = Image.open(io.BytesIO(original.content)).convert("RGB").getpixel((2, 2))
    assert pixel == (255, 0, 0)
    assert (await service.client.get(pose["exports"]["original"])).status_code == 404

    export = await service.client.post(
        f"{API}/poses/{pose['id']}/regenerate-export",
        json={"format": "tiktok"},
        headers=bearer(token),
    )
    assert export.status_code == 200, export.text
    tiktok = await service.client.get(export.json()["pose"]["exports"]["tiktok"])
    assert Image.open(io.BytesIO(tiktok.content)).size == (1080, 1920)
    bad = await service.client.post(
        f"{API}/poses/{pose['id']}/regenerate-export",
        json={"format": "gif"},
        headers=bearer(token),
    )
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "format"


async def test_project_from_an_uploaded_image(service: Service) -> None:
    user = await register(service.client, "upload-project@example.com")
    token = user["token"]
    response = await service.client.post(
        f"{API}/projects/upload",
        data={"name": "Uploaded"},
        files={"image": ("me.png", png(), "image/png")},
        headers=bearer(token),
    )
    assert response.status_code == 201, response.text
    project = response.json()["project"]
    assert project["avatar_id"] is None
    assert (await service.client.get(project["image_url"])).status_code == 200
    updated = await service.client.put(
        f"{API}/projects/{project['id']}",
        json={"description": "Summer shoot"},
        headers=bearer(token),
    )
    assert updated.json()["project"]["description"] == "Summer shoot"
    assert updated.json()["project"]["name"] == "Uploaded"


async def test_pose_requests_move_through_their_states(service: Service) -> None:
    user = await register(service.client, "asker@example.com")
    token = user["token"]
    async with open_deps(service.settings, migrate=False) as deps:
        await create_user(
            deps, email="poseadmin@example.com", password=STRONG_PASSWORD, role="admin"
        )
    login = await service.client.post(
        "/api/auth/login", json={"email": "poseadmin@example.com", "password": STRONG_PASSWORD}
    )
    admin = bearer(login.json()["token"])
    body = {"pose_name": "Skill shot", "description": "Holding a trophy up high, smiling."}
    created = await service.client.post(f"{API}/requests", json=body, headers=bearer(token))
    assert created.status_code == 201, created.text
    request_id = created.json()["request"]["id"]
    assert created.json()["request"]["status"] == "pending"
    blocked = await service.client.post(
        f"{API}/requests", json={**body, "pose_name": "Kill shot"}, headers=bearer(token)
    )
    assert blocked.status_code == 400
    assert blocked.json()["errors"][0]["field"] == "pose_name"
    mine = await service.client.get(f"{API}/requests", headers=bearer(token))
    assert [r["id"] for r in mine.json()["requests"]] == [request_id]

    refused = await service.client.get(f"{API}/admin/requests", headers=bearer(token))
    assert refused.status_code == 403
    denied = await service.client.post(
        f"{API}/admin/requests/{request_id}/approve", headers=bearer(token)
    )
    assert denied.status_code == 403

    async def act(action: str, **body: Any) -> Any:
        return await service.client.post(
            f"{API}/admin/requests/{request_id}/{action}", json=body, headers=admin
        )

    early = await act("complete")
    assert early.status_code == 409
    assert early.json()["code"] == "POSE_REQUEST_TRANSITION_REFUSED"
    assert early.json()["request_status"] == "pending"
    for action, status in (
        ("approve", "approved"),
        ("start", "in_progress"),
        ("complete", "completed"),
    ):
        response = await act(action)
        assert response.status_code == 200, response.text
        assert response.json()["request"]["status"] == status
    assert (await act("approve")).status_code == 409
    assert (await act("frobnicate")).status_code == 404

    second = await service.client.post(f"{API}/requests", json=body, headers=bearer(token))
    request_id = second.json()["request"]["id"]
    no_notes = await act("reject")
    assert no_notes.status_code == 400
    assert no_notes.json()["errors"][0]["field"] == "notes"
    rejected = await act("reject", notes="We have one like it already.")
    assert rejected.json()["request"]["status"] == "rejected"
    assert rejected.json()["request"]["notes"] == "We have one like it already."
    listed = await service.client.get(f"{API}/admin/requests?status=rejected", headers=admin)
    assert [r["id"] for r in listed.json()["requests"]] == [request_id]
    unknown = await service.client.post(
        f"{API}/admin/requests/{uuid.uuid4()}/approve", json={}, headers=admin
    )
    assert unknown.status_code == 404


async def test_library_and_health_are_public(service: Service) -> None:
    categories = (await service.client.get(f"{API}/categories")).json()["categories"]
    assert len(categories) >= 1
    page = (await service.client.get(f"{API}/library?limit=5")).json()
    assert len(page["poses"]) == 5
    assert page["next_cursor"] is not None
    rest = await service.client.get(f"{API}/library?limit=5&cursor={page['next_cursor']}")
    assert {p["id"] for p in rest.json()["poses"]}.isdisjoint(p["id"] for p in page["poses"])
    pose = await service.client.get(f"{API}/library/{POSES[0]}")
    assert len(pose.json()["pose"]["keypoints"]) == 18
    assert (await service.client.get(f"{API}/library/no-such-pose")).status_code == 404
    bad = await service.client.get(f"{API}/library?limit=x")
    assert bad.status_code == 400
    health = await service.client.get(f"{API}/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["queue"]["pose.generate"]["queued"] == 0


async def test_an_open_pose_breaker_degrades_health_and_holds_jobs(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on: every call is refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        "LUMIKU_JOBS_POLL_S": "0.05",
        "LUMIKU_CREDITS_WELCOME_BONUS": "1000",
        "LUMIKU_PROVIDERS_POSE": "huggingface",
        "LUMIKU_PROVIDERS_BREAKER_FAILURES": "1",
        "LUMIKU_PROVIDERS_BREAKER_RESET_S": "600",
        "LUMIKU_HUGGINGFACE_BASE_URL": f"http://127.0.0.1:{port}",
    }
    registry = Registry([make_app()])
    with trio.fail_after(60):
        async with running_service(make_settings(tmp_path, env), apps=registry) as service:
            assert (await service.client.get(f"{API}/health")).status_code == 200
            user = await register(service.client, "degraded@example.com")
            project_id = await make_project(service, user)
            response = await service.client.post(
                f"{API}/generate",
                json=gallery(project_id, batch_size=1),
                headers=bearer(user["token"]),
            )
            assert response.status_code == 202, response.text
            while True:
                health = await service.client.get(f"{API}/health")
                if health.status_code == 503:
                    break
                await trio.sleep(0.05)
            body = health.json()
            assert body["status"] == "degraded"
            assert body["providers"]["providers"]["huggingface"]["state"] == "open"
            path = f"{API}/generations/{response.json()['generation_id']}"
            while True:  # the failed attempt goes back to the queue, and is held there
                generation = await service.client.get(path, headers=bearer(user["token"]))
                status = generation.json()["generation"]["status"]
                assert status in ("queued", "running"), generation.text
                if status == "queued":
                    break
                await trio.sleep(0.05)


async def test_an_uploaded_background(service: Service) -> None:
    user = await register(service.client, "upload-bg@example.com")
    token = user["token"]
    project_id = await make_project(service, user)
    uploaded = await service.client.post(
        f"{API}/uploads/upload",
        files={"image": ("beach.png", png(color=(10, 200, 30)), "image/png")},
        headers=bearer(token),
    )
    assert uploaded.status_code == 201, uploaded.text
    file_id = uploaded.json()["file_id"]
    body = gallery(
        project_id,
        selected_pose_ids=[POSES[0]],
        batch_size=1,
        background_mode="upload",
        background_color=None,
        background_file_id=file_id,
        output_formats=["original"],
    )
    response = await service.client.post(f"{API}/generate", json=body, headers=bearer(token))
    assert response.status_code == 202, response.text
    done = await wait_generation(service, token, response.json()["generation_id"])
    assert done["status"] == "succeeded"
    results = await service.client.get(
        f"{API}/generations/{done['id']}/results", headers=bearer(token)
    )
    original = await service.client.get(results.json()["poses"][0]["exports"]["original"])
    pixel = Image.open(io.BytesIO(original.content)).convert("RGB").getpixel((2, 2))
    assert pixel == (10, 200, 30)
    other = await register(service.client, "upload-thief@example.com")
    other_project = await make_project(service, other)
    stolen = await service.client.post(
        f"{API}/generate",
        json={**body, "project_id": other_project},
        headers=bearer(other["token"]),
    )
    assert stolen.status_code == 400
    assert stolen.json()["errors"][0]["field"] == "background_file_id"


async def test_using_an_avatar_records_it_in_the_avatars_usage_history(
    tmp_path: Path, database_url: str, scripted: ScriptedRenderers
) -> None:
    # SPEC §17: Pose reads the avatar through the Avatar Creator's service, and each use (the
    # project linking it, each generation from it) shows in the avatar's usage history.
    env = {"LUMIKU_DATABASE_URL": database_url, "LUMIKU_JOBS_POLL_S": "0.05"}
    registry = Registry([avatar_creator_app(), make_app(renderers_of(scripted))])
    with trio.fail_after(120):
        async with running_service(make_settings(tmp_path, env), apps=registry) as service:
            user = await register(service.client, "usage@example.com")
            auth = bearer(user["token"])
            avatar_id = await make_avatar(service, user)
            history = f"/api/apps/avatar-creator/avatars/{avatar_id}/usage-history"
            assert (await service.client.get(history, headers=auth)).json()["usage"] == []
            project = await service.client.post(
                f"{API}/projects", json={"name": "Shoot", "avatar_id": avatar_id}, headers=auth
            )
            assert project.status_code == 201, project.text
            assert project.json()["project"]["image_url"] is not None  # the avatar's image
            project_id = project.json()["project"]["id"]
            body = gallery(project_id, batch_size=1, selected_pose_ids=[POSES[0]])
            headers = {**auth, "Idempotency-Key": "usage-once"}
            generated = await service.client.post(f"{API}/generate", json=body, headers=headers)
            assert generated.status_code == 202, generated.text
            replayed = await service.client.post(f"{API}/generate", json=body, headers=headers)
            assert replayed.headers["Idempotent-Replayed"] == "true"
            generation_id = generated.json()["generation_id"]
            done = await wait_generation(service, user["token"], generation_id)
            usage = (await service.client.get(history, headers=auth)).json()["usage"]
            avatar = await service.client.get(
                f"/api/apps/avatar-creator/avatars/{avatar_id}", headers=auth
            )
    assert done["status"] == "succeeded"
    # newest first; the replay recorded nothing more
    assert [(u["app"], u["action"], u["reference_id"]) for u in usage] == [
        ("pose-generator", "generate", generation_id),
        ("pose-generator", "project", project_id),
    ]
    assert avatar.json()["avatar"]["usage_count"] == 2
