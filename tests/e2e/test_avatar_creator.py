"""Avatar Creator end to end (SPEC §8.1) over HTTP and /api/ws, on SQLite and PostgreSQL:
projects, generation with live progress, uploads and their charge, presets, ownership,
validation."""

from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from PIL import Image

from lumiku.accounts.service import change_tags, create_user
from lumiku.apps.avatar_creator.app import make_app
from lumiku.apps.avatar_creator.handlers import generate_avatar
from lumiku.apps.avatar_creator.service import record_usage
from lumiku.apps.registry import Registry
from lumiku.deps import Deps
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
from tests.e2e.wsclient import WsClient, connect

API = "/api/apps/avatar-creator"
GENEROUS = {
    "LUMIKU_RATELIMIT_REGISTER": "1000/1h",
    "LUMIKU_RATELIMIT_LOGIN": "1000/15m",
    "LUMIKU_RATELIMIT_GENERATE": "1000/1m",
    "LUMIKU_RATELIMIT_UPLOAD": "1000/1m",
    "LUMIKU_RATELIMIT_FROM_PRESET": "1000/1m",
    "LUMIKU_RATELIMIT_PROJECT_CREATE": "1000/1h",
}
PROMPT = "a friendly portrait with warm light"


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> AsyncIterator[Service]:
    env = {
        "LUMIKU_DATABASE_URL": database_url,
        "LUMIKU_JOBS_POLL_S": "0.05",
        "LUMIKU_STORAGE_PATH": str(tmp_path / "files"),
        **GENEROUS,
    }
    with trio.fail_after(60):
        async with running_service(
            make_settings(tmp_path, env), apps=Registry([make_app()])
        ) as svc:
            yield svc


def stored_files(service: Service) -> list[str]:
    root = service.settings.storage.path
    return sorted(
        os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files
    )


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, "PNG")
    return out.getvalue()


async def new_project(client: httpx.AsyncClient, token: str, name: str = "Team") -> str:
    response = await client.post(f"{API}/projects", json={"name": name}, headers=bearer(token))
    assert response.status_code == 201, response.text
    return str(response.json()["project"]["id"])


async def balance(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get("/api/credits/balance", headers=bearer(token))
    return int(response.json()["balance"])


async def upload(
    client: httpx.AsyncClient,
    token: str,
    project_id: str,
    image: bytes,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    return await client.post(
        f"{API}/projects/{project_id}/avatars/upload",
        files={"image": ("me.png", image, "image/png")},
        data={"name": "Me", "gender": "female", "persona_personality": "calm, kind"},
        headers={**bearer(token), **(headers or {})},
    )


async def until(ws: WsClient, event_type: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with trio.fail_after(30):
        while not out or out[-1]["type"] != event_type:
            out.append(json.loads(await ws.receive()))
    return out


async def generation_status(service: Service, token: str, generation_id: str) -> str:
    response = await service.client.get(f"{API}/generations/{generation_id}", headers=bearer(token))
    return str(response.json()["generation"]["status"])


async def image_size(client: httpx.AsyncClient, url: str) -> tuple[int, int]:
    response = await client.get(url)  # signed: no token
    assert response.status_code == 200, response.text
    with Image.open(io.BytesIO(response.content)) as opened:
        return opened.size


async def generate_and_watch(
    service: Service, token: str, path: str, body: dict[str, Any]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Submit through `path` with the websocket open; the 202 body and the job's events."""
    async with connect(f"{service.ws_url}?token={token}") as ws:
        assert json.loads(await ws.receive())["type"] == "ready"
        response = await service.client.post(path, json=body, headers=bearer(token))
        assert response.status_code == 202, response.text
        events = await until(ws, "generation:completed")
    accepted = response.json()
    return accepted, [e for e in events if e.get("job_id") == accepted["job_id"]]


async def test_generate_reports_progress_and_makes_a_downloadable_avatar(
    service: Service,
) -> None:
    user = await register(service.client, "gen@example.com")
    token = user["token"]
    project_id = await new_project(service.client, token)
    body = {"name": "Rina", "prompt": PROMPT, "hair_color": "red", "width": 512, "height": 640}
    accepted, events = await generate_and_watch(
        service, token, f"{API}/projects/{project_id}/avatars/generate", body
    )
    assert (accepted["credit_used"], accepted["credit_balance"]) == (10, 90)
    assert accepted["generation"]["status"] == "queued"
    types = [e["type"] for e in events]
    assert types[-1] == "generation:completed"
    stages = [e["data"]["stage"] for e in events if e["type"] == "generation:progress"]
    assert stages[0] == "rendering"
    assert {"storing", "saving"} <= set(stages)
    assert any(s.startswith("rendering: ") for s in stages)  # the provider's own stages
    assert events[-1]["data"]["result"]["avatar_id"]

    generation_id = accepted["generation"]["id"]
    done = await service.client.get(f"{API}/generations/{generation_id}", headers=bearer(token))
    generation = done.json()["generation"]
    assert generation["status"] == "succeeded"
    avatar = generation["avatar"]
    assert avatar["source_type"] == "text_to_image"
    assert avatar["attributes"]["hair_color"] == "red"
    assert await image_size(service.client, avatar["image_url"]) == (512, 640)
    assert await image_size(service.client, avatar["thumbnail_url"]) == (300, 300)
    assert await balance(service.client, token) == 90

    project = await service.client.get(f"{API}/projects/{project_id}", headers=bearer(token))
    assert [a["id"] for a in project.json()["project"]["avatars"]] == [avatar["id"]]
    stats = (await service.client.get(f"{API}/stats", headers=bearer(token))).json()
    assert stats["avatars_by_source_type"]["text_to_image"] == 1
    assert stats["credits_spent"] == 10

    # Deleting the project removes its avatars and their files.
    assert stored_files(service)
    deleted = await service.client.delete(f"{API}/projects/{project_id}", headers=bearer(token))
    assert deleted.status_code == 200
    gone = await service.client.get(f"{API}/avatars/{avatar['id']}", headers=bearer(token))
    assert gone.status_code == 404
    assert stored_files(service) == []


@attrs.define
class RerunContext:
    """What a worker hands the handler, for running a job's payload again by hand."""

    payload: dict[str, Any]
    user_id: uuid.UUID
    deps: Deps
    job_id: str = "rerun"
    attempt: int = 2
    stages: list[str] = attrs.field(factory=list)
    delivered: int = 0

    async def progress(self, completed: int, total: int, stage: str) -> None:
        self.stages.append(stage)

    def deliver(self, cost: int) -> None:
        self.delivered += cost


async def test_a_generation_run_again_makes_no_second_avatar(service: Service) -> None:
    user = await register(service.client, "rerun@example.com")
    token, user_id = user["token"], uuid.UUID(user["user"]["id"])
    project_id = await new_project(service.client, token)
    accepted, events = await generate_and_watch(
        service,
        token,
        f"{API}/projects/{project_id}/avatars/generate",
        {"name": "Again", "prompt": PROMPT, "width": 512, "height": 512},
    )
    first = events[-1]["data"]["result"]
    job = await service.client.get(f"/api/jobs/{accepted['job_id']}", headers=bearer(token))
    payload = job.json()["job"]["payload"]
    files = stored_files(service)
    async with open_deps(service.settings, migrate=False) as deps:
        again = await generate_avatar(RerunContext(payload, user_id, deps))
        assert again.result == first  # found, not rendered again
        assert stored_files(service) == files

        # An attempt that died after storing but before saving left a file behind: the
        # next attempt clears it, saves the avatar once, and a third run finds that one.
        fresh = {**payload, "generation_id": str(uuid.uuid4())}
        stray = new_key("avatar-creator", user_id, "png", group=fresh["generation_id"])
        await deps.storage.put(stray, png(300, 300), "image/png")
        made = await generate_avatar(context := RerunContext(fresh, user_id, deps))
        assert context.stages[0] == "rendering"
        assert context.stages[-3:] == ["storing", "saving", "done"]
        assert str(stray) not in stored_files(service)
        assert made.result["avatar_id"] != first["avatar_id"]
        assert (await generate_avatar(RerunContext(fresh, user_id, deps))).result == made.result
    assert len(stored_files(service)) == len(files) + 2


async def test_generation_replays_an_idempotency_key_without_a_second_charge(
    service: Service,
) -> None:
    user = await register(service.client, "idem@example.com")
    token = user["token"]
    project_id = await new_project(service.client, token)
    path = f"{API}/projects/{project_id}/avatars/generate"
    body = {"name": "Once", "prompt": PROMPT, "width": 512, "height": 512}
    headers = {**bearer(token), "Idempotency-Key": "gen-1"}
    first = await service.client.post(path, json=body, headers=headers)
    again = await service.client.post(path, json=body, headers=headers)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["generation"]["id"] == first.json()["generation"]["id"]
    assert again.json()["job_id"] == first.json()["job_id"]
    other = await service.client.post(path, json={**body, "name": "Twice"}, headers=headers)
    assert other.status_code == 422
    assert await balance(service.client, token) == 90


async def test_enterprise_unlimited_users_are_charged_nothing(service: Service) -> None:
    user = await register(service.client, "boss@example.com")
    token = user["token"]
    async with open_deps(service.settings, migrate=False) as deps:
        await change_tags(deps, email="boss@example.com", add=["enterprise_unlimited"])
    project_id = await new_project(service.client, token)
    accepted, _events = await generate_and_watch(
        service,
        token,
        f"{API}/projects/{project_id}/avatars/generate",
        {"name": "Free", "prompt": PROMPT, "width": 512, "height": 512},
    )
    assert (accepted["credit_used"], accepted["credit_balance"]) == (0, 100)
    uploaded = await upload(service.client, token, project_id, png(400, 400))
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["credit_used"] == 0
    assert await balance(service.client, token) == 100


async def test_from_preset_costs_8_and_presets_list_by_category(service: Service) -> None:
    presets = (await service.client.get(f"{API}/presets")).json()  # public
    assert presets["categories"] == ["professional", "casual", "sports", "fashion", "traditional"]
    sports = (await service.client.get(f"{API}/presets?category=sports")).json()["presets"]
    assert sports
    assert {p["category"] for p in sports} == {"sports"}
    one = await service.client.get(f"{API}/presets/{sports[0]['id']}")
    assert one.json()["preset"]["id"] == sports[0]["id"]
    assert (await service.client.get(f"{API}/presets/no-such-preset")).status_code == 404
    bad = await service.client.get(f"{API}/presets?category=space")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "category"

    user = await register(service.client, "preset@example.com")
    token = user["token"]
    project_id = await new_project(service.client, token)
    path = f"{API}/projects/{project_id}/avatars/from-preset"
    unknown = await service.client.post(
        path, json={"preset_id": "no-such-preset"}, headers=bearer(token)
    )
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["field"] == "preset_id"
    accepted, _events = await generate_and_watch(
        service, token, path, {"preset_id": sports[0]["id"], "custom_name": "Coach"}
    )
    assert (accepted["credit_used"], accepted["credit_balance"]) == (8, 92)
    generation_id = accepted["generation"]["id"]
    done = await service.client.get(f"{API}/generations/{generation_id}", headers=bearer(token))
    avatar = done.json()["generation"]["avatar"]
    assert (avatar["source_type"], avatar["preset_id"], avatar["name"]) == (
        "from_preset",
        sports[0]["id"],
        "Coach",
    )
    assert await image_size(service.client, avatar["thumbnail_url"]) == (300, 300)


async def test_upload_charges_2_with_the_avatar_and_rejections_write_nothing(
    service: Service,
) -> None:
    user = await register(service.client, "up@example.com")
    token = user["token"]
    project_id = await new_project(service.client, token)

    small = await upload(service.client, token, project_id, png(100, 100))
    assert small.status_code == 400
    assert small.json()["code"] == "IMAGE_TOO_SMALL"
    assert stored_files(service) == []
    assert await balance(service.client, token) == 100

    key = {"Idempotency-Key": "upload-1"}
    done = await upload(service.client, token, project_id, png(512, 400), key)
    assert done.status_code == 201, done.text
    body = done.json()
    assert (body["credit_used"], body["credit_balance"]) == (2, 98)
    avatar = body["avatar"]
    assert (avatar["source_type"], avatar["width"], avatar["height"]) == ("upload", 512, 400)
    assert avatar["persona"]["personality"] == ["calm", "kind"]
    assert await image_size(service.client, avatar["image_url"]) == (512, 400)
    assert await image_size(service.client, avatar["thumbnail_url"]) == (300, 300)
    assert len(stored_files(service)) == 2

    replay = await upload(service.client, token, project_id, png(512, 400), key)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["avatar"]["id"] == avatar["id"]
    assert await balance(service.client, token) == 98
    assert len(stored_files(service)) == 2

    user_id = uuid.UUID(user["user"]["id"])
    async with open_deps(service.settings, migrate=False) as deps, deps.store.transaction() as tx:
        await record_usage(
            tx,
            avatar_id=uuid.UUID(avatar["id"]),
            user_id=user_id,
            app="pose-generator",
            action="pose.generate",
            reference_id="gen-1",
        )
    history = await service.client.get(
        f"{API}/avatars/{avatar['id']}/usage-history", headers=bearer(token)
    )
    assert [(u["app"], u["reference_id"]) for u in history.json()["usage"]] == [
        ("pose-generator", "gen-1")
    ]
    again = await service.client.get(f"{API}/avatars/{avatar['id']}", headers=bearer(token))
    assert again.json()["avatar"]["usage_count"] == 1
    assert again.json()["avatar"]["last_used_at"] is not None

    deleted = await service.client.delete(f"{API}/avatars/{avatar['id']}", headers=bearer(token))
    assert deleted.status_code == 200
    assert stored_files(service) == []


async def test_an_upload_without_enough_credits_leaves_no_avatar_and_no_file(
    service: Service,
) -> None:
    async with open_deps(service.settings, migrate=False) as deps:
        await create_user(deps, email="poor@example.com", password=STRONG_PASSWORD, credits=1)
    login = await service.client.post(
        "/api/auth/login", json={"email": "poor@example.com", "password": STRONG_PASSWORD}
    )
    token = login.json()["token"]
    project_id = await new_project(service.client, token)
    refused = await upload(service.client, token, project_id, png(512, 512))
    assert refused.status_code == 402
    assert (refused.json()["required"], refused.json()["available"]) == (2, 1)
    assert stored_files(service) == []
    project = await service.client.get(f"{API}/projects/{project_id}", headers=bearer(token))
    assert project.json()["project"]["avatars"] == []
    assert await balance(service.client, token) == 1


async def test_every_id_route_answers_404_for_someone_elses_resource(service: Service) -> None:
    owner = (await register(service.client, "owner@example.com"))["token"]
    intruder = (await register(service.client, "intruder@example.com"))["token"]
    project_id = await new_project(service.client, owner)
    avatar_id = (await upload(service.client, owner, project_id, png(300, 300))).json()["avatar"][
        "id"
    ]
    generated = await service.client.post(
        f"{API}/projects/{project_id}/avatars/generate",
        json={"name": "Mine", "prompt": PROMPT, "width": 512, "height": 512},
        headers=bearer(owner),
    )
    generation_id = generated.json()["generation"]["id"]
    preset_id = (await service.client.get(f"{API}/presets")).json()["presets"][0]["id"]
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", f"/projects/{project_id}", {}),
        ("PUT", f"/projects/{project_id}", {"json": {"name": "Mine now"}}),
        ("DELETE", f"/projects/{project_id}", {}),
        (
            "POST",
            f"/projects/{project_id}/avatars/generate",
            {"json": {"name": "x", "prompt": PROMPT}},
        ),
        ("POST", f"/projects/{project_id}/avatars/from-preset", {"json": {"preset_id": preset_id}}),
        ("GET", f"/generations/{generation_id}", {}),
        ("GET", f"/avatars/{avatar_id}", {}),
        ("PUT", f"/avatars/{avatar_id}", {"json": {"name": "Mine now"}}),
        ("DELETE", f"/avatars/{avatar_id}", {}),
        ("GET", f"/avatars/{avatar_id}/usage-history", {}),
        ("GET", f"/avatars/{uuid.uuid4()}", {}),
        ("GET", "/avatars/not-a-uuid", {}),
    ]
    for method, path, kwargs in attempts:
        response = await service.client.request(
            method, f"{API}{path}", headers=bearer(intruder), **kwargs
        )
        assert response.status_code == 404, (method, path, response.text)
    theirs = await upload(service.client, intruder, project_id, png(300, 300))
    assert theirs.status_code == 404
    assert await balance(service.client, intruder) == 100
    # The owner still has everything, and sees the usage history (empty).
    for path in (f"/projects/{project_id}", f"/avatars/{avatar_id}/usage-history"):
        mine = await service.client.get(f"{API}{path}", headers=bearer(owner))
        assert mine.status_code == 200, mine.text
    listed = (await service.client.get(f"{API}/projects", headers=bearer(intruder))).json()
    assert listed == {"projects": [], "next_cursor": None}


LONG = "x" * 51
GENERATE_CASES: list[tuple[dict[str, Any], str]] = [
    ({"prompt": PROMPT}, "name"),
    ({"name": " ", "prompt": PROMPT}, "name"),
    ({"name": "n" * 101, "prompt": PROMPT}, "name"),
    ({"name": "A"}, "prompt"),
    ({"name": "A", "prompt": "too short"}, "prompt"),
    ({"name": "A", "prompt": "p" * 2001}, "prompt"),
    ({"persona_age": 0}, "persona_age"),
    ({"persona_age": 121}, "persona_age"),
    ({"persona_personality": ["kind"] * 11}, "persona_personality"),
    ({"persona_personality": [LONG]}, "persona_personality.0"),
    ({"persona_background": "b" * 501}, "persona_background"),
    ({"gender": "robot"}, "gender"),
    ({"age_range": "ancient"}, "age_range"),
    ({"ethnicity": LONG}, "ethnicity"),
    ({"body_type": LONG}, "body_type"),
    ({"hair_style": LONG}, "hair_style"),
    ({"hair_color": LONG}, "hair_color"),
    ({"eye_color": LONG}, "eye_color"),
    ({"skin_tone": LONG}, "skin_tone"),
    ({"style": LONG}, "style"),
    ({"width": 511}, "width"),
    ({"height": 2049}, "height"),
    ({"seed": -1}, "seed"),
]


async def test_each_rule_is_a_validation_error_naming_its_field(service: Service) -> None:
    token = (await register(service.client, "rules@example.com"))["token"]
    project_id = await new_project(service.client, token)
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/projects", {"name": ""}, "name"),
        ("POST", "/projects", {"name": "n" * 101}, "name"),
        ("POST", "/projects", {"name": "ok", "description": "d" * 501}, "description"),
        ("PUT", f"/projects/{project_id}", {"name": None}, "name"),
        ("POST", f"/projects/{project_id}/avatars/from-preset", {}, "preset_id"),
        (
            "POST",
            f"/projects/{project_id}/avatars/from-preset",
            {"preset_id": "x", "custom_name": "c" * 101},
            "custom_name",
        ),
        ("PUT", f"/avatars/{uuid.uuid4()}", {"persona_age": 200}, "persona_age"),
    ]
    valid = {"name": "A", "prompt": PROMPT}
    cases += [
        (
            "POST",
            f"/projects/{project_id}/avatars/generate",
            body if field in valid else {**valid, **body},
            field,
        )
        for body, field in GENERATE_CASES
    ]
    for method, path, body, field in cases:
        response = await service.client.request(
            method, f"{API}{path}", json=body, headers=bearer(token)
        )
        assert response.status_code == 400, (path, body, response.text)
        problem = response.json()
        assert problem["code"] == "VALIDATION_ERROR"
        assert field in [e["field"] for e in problem["errors"]], (body, problem)
    assert await balance(service.client, token) == 100


async def test_health_reports_the_avatar_provider(service: Service) -> None:
    health = await service.client.get(f"{API}/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["operations"] == {"avatar": "local"}


async def test_health_is_degraded_and_jobs_wait_while_the_provider_breaker_is_open(
    tmp_path: Path, sqlite_url: str
) -> None:
    with trio.socket.socket() as sock:  # a port nothing listens on: connections are refused
        await sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    env = {
        "LUMIKU_DATABASE_URL": sqlite_url,
        "LUMIKU_JOBS_POLL_S": "0.05",
        "LUMIKU_PROVIDERS_AVATAR": "huggingface",
        "LUMIKU_HUGGINGFACE_BASE_URL": f"http://127.0.0.1:{closed_port}",
        "LUMIKU_PROVIDERS_BREAKER_FAILURES": "1",
        "LUMIKU_PROVIDERS_BREAKER_RESET_S": "600",
        **GENEROUS,
    }
    with trio.fail_after(60):
        async with running_service(
            make_settings(tmp_path, env), apps=Registry([make_app()])
        ) as service:
            assert (await service.client.get(f"{API}/health")).status_code == 200
            token = (await register(service.client, "down@example.com"))["token"]
            project_id = await new_project(service.client, token)
            accepted = await service.client.post(
                f"{API}/projects/{project_id}/avatars/generate",
                json={"name": "Later", "prompt": PROMPT, "width": 512, "height": 512},
                headers=bearer(token),
            )
            assert accepted.status_code == 202, accepted.text
            with trio.fail_after(20):
                while (health := await service.client.get(f"{API}/health")).status_code != 503:
                    await trio.sleep(0.05)
            assert health.json()["status"] == "degraded"
            assert health.json()["providers"]["huggingface"]["state"] == "open"
            generation_id = accepted.json()["generation"]["id"]
            with trio.fail_after(20):  # the failed attempt goes back to the queue, not failed
                while (status := await generation_status(service, token, generation_id)) == (
                    "running"
                ):
                    await trio.sleep(0.05)
            assert status == "queued"
            assert await balance(service.client, token) == 90


async def test_projects_page_newest_first_and_update(service: Service) -> None:
    token = (await register(service.client, "pages@example.com"))["token"]
    ids = [await new_project(service.client, token, f"P{i}") for i in range(3)]
    first = (await service.client.get(f"{API}/projects?limit=2", headers=bearer(token))).json()
    assert [p["id"] for p in first["projects"]] == ids[:0:-1]
    rest = await service.client.get(
        f"{API}/projects?limit=2&cursor={first['next_cursor']}", headers=bearer(token)
    )
    assert [p["id"] for p in rest.json()["projects"]] == ids[:1]
    assert rest.json()["next_cursor"] is None
    bad = await service.client.get(f"{API}/projects?cursor=%%%", headers=bearer(token))
    assert bad.status_code == 400
    changed = await service.client.put(
        f"{API}/projects/{ids[0]}",
        json={"name": "  Renamed   project ", "description": "About"},
        headers=bearer(token),
    )
    assert changed.status_code == 200, changed.text
    project = changed.json()["project"]
    assert (project["name"], project["description"]) == ("Renamed project", "About")
    cleared = await service.client.put(
        f"{API}/projects/{ids[0]}", json={"description": None}, headers=bearer(token)
    )
    assert cleared.json()["project"] == {
        **project,
        "description": None,
        "updated_at": cleared.json()["project"]["updated_at"],
    }
