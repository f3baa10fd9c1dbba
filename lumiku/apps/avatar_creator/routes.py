"""Avatar Creator's routes under `/api/apps/avatar-creator` (SPEC §8.1).

Routes parse and validate (`requests.py`) and answer; the work is the service's. Every
`{id}` that is not a UUID, or is someone else's, answers 404. Presets are public.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

from quart import Blueprint, request

from lumiku.apps.avatar_creator import presets, requests, service, uploads
from lumiku.errors import NotFound
from lumiku.http.auth import authenticated, current_user, user_identity
from lumiku.http.bodies import query_int, read_json
from lumiku.http.context import current_deps
from lumiku.http.idempotency import REPLAYED_HEADER, accepted, read_idempotency
from lumiku.http.ratelimit import rate_limited
from lumiku.http.uploads import read_upload, validate_image

PREFIX: Final = "/api/apps/avatar-creator"
CREATED: Final = 201
SERVICE_UNAVAILABLE: Final = 503

Answer = tuple[dict[str, Any], int] | tuple[dict[str, Any], int, dict[str, str]]


def _id(raw: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"No such {what}.") from None


def _page() -> dict[str, Any]:
    return {"limit": query_int("limit", 20, 1, 100), "cursor": request.args.get("cursor")}


def make_blueprint() -> Blueprint:
    """A fresh blueprint (one per app instance: tests build several services)."""
    bp = Blueprint("avatar_creator", __name__, url_prefix=PREFIX)

    # Projects ---------------------------------------------------------------------------

    @bp.get("/projects")
    @authenticated
    async def list_projects() -> dict[str, Any]:
        return await service.list_projects(current_deps(), current_user(), **_page())

    @bp.post("/projects")
    @authenticated
    @rate_limited("avatar-creator.project_create", identity=user_identity)
    async def create_project() -> tuple[dict[str, Any], int]:
        project = requests.validate_project_create(await read_json())
        created = await service.create_project(current_deps(), current_user(), project)
        return {"project": created}, CREATED

    @bp.get("/projects/<project_id>")
    @authenticated
    async def get_project(project_id: str) -> dict[str, Any]:
        project = await service.get_project(
            current_deps(), current_user(), _id(project_id, "project")
        )
        return {"project": project}

    @bp.put("/projects/<project_id>")
    @authenticated
    async def update_project(project_id: str) -> dict[str, Any]:
        pid = _id(project_id, "project")
        changes = requests.validate_project_update(await read_json())
        return {
            "project": await service.update_project(current_deps(), current_user(), pid, changes)
        }

    @bp.delete("/projects/<project_id>")
    @authenticated
    async def delete_project(project_id: str) -> tuple[dict[str, Any], int]:
        await service.delete_project(current_deps(), current_user(), _id(project_id, "project"))
        return {"deleted": True}, 200

    # Avatars ----------------------------------------------------------------------------

    @bp.post("/projects/<project_id>/avatars/upload")
    @authenticated
    @rate_limited("avatar-creator.upload", identity=user_identity)
    async def upload(project_id: str) -> Answer:
        deps, user = current_deps(), current_user()
        pid = _id(project_id, "project")
        idempotency = await read_idempotency()
        key = None
        if idempotency.key is not None and idempotency.request_hash is not None:
            key = uploads.UploadKey(idempotency.key, idempotency.request_hash)
            replay = await uploads.replay_or_reserve(deps, user, key)
            if replay is not None:
                return replay.as_dict(), CREATED, {REPLAYED_HEADER: "true"}
        try:
            form = await read_upload(deps.settings)
            fields = requests.validate_upload_fields(form.fields)
            image = await validate_image(form, deps.settings)
            done = await uploads.upload_avatar(deps, user, pid, image, fields, key)
        except BaseException:
            if key is not None:
                await uploads.drop_key(deps, user, key)
            raise
        return done.as_dict(), CREATED

    @bp.post("/projects/<project_id>/avatars/generate")
    @authenticated
    @rate_limited("avatar-creator.generate", identity=user_identity)
    async def generate(project_id: str) -> Answer:
        pid = _id(project_id, "project")
        key = await read_idempotency()
        generation = requests.validate_generate(await read_json())
        return await _submit(pid, generation, key.key, key.request_hash)

    @bp.post("/projects/<project_id>/avatars/from-preset")
    @authenticated
    @rate_limited("avatar-creator.from_preset", identity=user_identity)
    async def from_preset(project_id: str) -> Answer:
        pid = _id(project_id, "project")
        key = await read_idempotency()
        generation = requests.validate_from_preset(await read_json())
        return await _submit(pid, generation, key.key, key.request_hash)

    @bp.get("/generations/<generation_id>")
    @authenticated
    async def get_generation(generation_id: str) -> dict[str, Any]:
        gid = _id(generation_id, "generation")
        return await service.get_generation(current_deps(), current_user(), gid)

    @bp.get("/avatars/<avatar_id>")
    @authenticated
    async def get_avatar(avatar_id: str) -> dict[str, Any]:
        aid = _id(avatar_id, "avatar")
        return {"avatar": await service.get_avatar(current_deps(), current_user(), aid)}

    @bp.put("/avatars/<avatar_id>")
    @authenticated
    async def update_avatar(avatar_id: str) -> dict[str, Any]:
        aid = _id(avatar_id, "avatar")
        changes = requests.validate_avatar_update(await read_json())
        return {"avatar": await service.update_avatar(current_deps(), current_user(), aid, changes)}

    @bp.delete("/avatars/<avatar_id>")
    @authenticated
    async def delete_avatar(avatar_id: str) -> tuple[dict[str, Any], int]:
        await service.delete_avatar(current_deps(), current_user(), _id(avatar_id, "avatar"))
        return {"deleted": True}, 200

    @bp.get("/avatars/<avatar_id>/usage-history")
    @authenticated
    async def usage_history(avatar_id: str) -> dict[str, Any]:
        aid = _id(avatar_id, "avatar")
        return await service.usage_history(current_deps(), current_user(), aid, **_page())

    # Presets, stats, health -------------------------------------------------------------

    @bp.get("/presets")
    async def list_presets() -> dict[str, Any]:
        found = presets.list_presets(request.args.get("category"))
        return {"presets": [p.as_dict() for p in found], "categories": list(presets.CATEGORIES)}

    @bp.get("/presets/<preset_id>")
    async def get_preset(preset_id: str) -> dict[str, Any]:
        return {"preset": presets.get(preset_id).as_dict()}

    @bp.get("/stats")
    @authenticated
    async def stats() -> dict[str, Any]:
        return await service.stats(current_deps(), current_user())

    @bp.get("/health")
    async def health() -> tuple[dict[str, Any], int]:
        """The avatar provider's state: 503 `degraded` while its breaker is not closed."""
        state = current_deps().providers.health(operations=("avatar",))
        return state, SERVICE_UNAVAILABLE if state["status"] != "ok" else 200

    return bp


async def _submit(
    project_id: uuid.UUID,
    generation: requests.AvatarGeneration,
    key: str | None,
    request_hash: str | None,
) -> tuple[dict[str, Any], int, dict[str, str]]:
    body, submission = await service.submit_generation(
        current_deps(),
        current_user(),
        project_id,
        generation,
        idempotency_key=key,
        request_hash=request_hash,
    )
    return accepted(body, submission)
