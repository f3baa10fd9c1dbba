"""Pose Generator routes under `/api/apps/pose-generator` (SPEC §8.2): the library
(public), projects, generations and their files, pose requests (admins decide), the app's
health."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from quart import Blueprint, Response, request

from lumiku.apps.pose_generator import library, pose_requests, requests, service
from lumiku.apps.pose_generator.archive import stream_zip
from lumiku.apps.pose_generator.service import APP_ID, parse_id
from lumiku.http.auth import admin_only, authenticated, current_user, user_identity
from lumiku.http.bodies import query_int, read_json
from lumiku.http.context import current_deps
from lumiku.http.idempotency import accepted, read_idempotency
from lumiku.http.ratelimit import rate_limited
from lumiku.http.uploads import read_image_upload

if TYPE_CHECKING:
    import uuid

PREFIX: Final = f"/api/apps/{APP_ID}"
blueprint = Blueprint("pose_generator", __name__, url_prefix=PREFIX)


# Library ----------------------------------------------------------------------------------


@blueprint.get("/categories")
async def categories() -> dict[str, Any]:
    return {"categories": library.categories_tree()}


@blueprint.get("/library")
async def library_page() -> dict[str, Any]:
    return library.search_args(request.args).as_dict()


@blueprint.get("/library/<pose_id>")
async def library_pose(pose_id: str) -> dict[str, Any]:
    return {"pose": library.get(pose_id).as_dict()}


# Projects ---------------------------------------------------------------------------------
# `<uuid:project_id>`: so `/projects/upload` is not also a project id (OPTIONS there would
# advertise GET, PUT and DELETE, which answer 404); any other id is 404 all the same.


@blueprint.get("/projects")
@authenticated
async def list_projects() -> dict[str, Any]:
    return await service.list_projects(
        current_deps(),
        current_user().id,
        limit=query_int("limit", 20, 1, 100),
        cursor=request.args.get("cursor"),
    )


@blueprint.post("/projects")
@authenticated
@rate_limited("pose-generator.project_create", user_identity)
async def create_project() -> tuple[dict[str, Any], int]:
    project = requests.validate_project_create(await read_json())
    return {
        "project": await service.create_project(current_deps(), current_user().id, project)
    }, 201


@blueprint.post("/projects/upload")
@authenticated
@rate_limited("pose-generator.upload", user_identity)
async def create_project_from_upload() -> tuple[dict[str, Any], int]:
    """A project whose image is the uploaded one (multipart: `image`, `name`,
    `description`)."""
    deps = current_deps()
    form = await read_image_upload(deps.settings)
    project = requests.validate_project_create(dict(form.fields), has_image=True)
    created = await service.create_project(deps, current_user().id, project, image=form.image)
    return {"project": created}, 201


@blueprint.get("/projects/<uuid:project_id>")
@authenticated
async def get_project(project_id: uuid.UUID) -> dict[str, Any]:
    return {"project": await service.get_project(current_deps(), current_user().id, project_id)}


@blueprint.put("/projects/<uuid:project_id>")
@authenticated
async def update_project(project_id: uuid.UUID) -> dict[str, Any]:
    changes = requests.validate_project_update(await read_json())
    deps, user = current_deps(), current_user()
    return {"project": await service.update_project(deps, user.id, project_id, changes)}


@blueprint.delete("/projects/<uuid:project_id>")
@authenticated
async def delete_project(project_id: uuid.UUID) -> tuple[str, int]:
    await service.delete_project(current_deps(), current_user().id, project_id)
    return "", 204


# Uploads (backgrounds) --------------------------------------------------------------------


@blueprint.post("/uploads/upload")
@authenticated
@rate_limited("pose-generator.upload", user_identity)
async def upload_background() -> tuple[dict[str, Any], int]:
    """An image for `background_mode: upload`; answers its `file_id`."""
    deps = current_deps()
    form = await read_image_upload(deps.settings)
    return await service.store_background(deps, current_user().id, form.image), 201


# Generations ------------------------------------------------------------------------------


@blueprint.post("/generate")
@authenticated
@rate_limited("pose-generator.generate", user_identity)
async def generate() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Validate, price (server-side) and queue a generation: 202 with its ids, what was
    charged and a completion estimate. Idempotency-Key replays the first answer."""
    key = await read_idempotency()
    generation = requests.validate_generate(await read_json())
    body, submission = await service.submit_generation(
        current_deps(), current_user(), generation, key
    )
    return accepted(body, submission)


@blueprint.get("/generations/<generation_id>")
@authenticated
async def get_generation(generation_id: str) -> dict[str, Any]:
    gid = parse_id(generation_id, "generation")
    return {"generation": await service.get_generation(current_deps(), current_user().id, gid)}


@blueprint.get("/generations/<generation_id>/results")
@authenticated
async def results(generation_id: str) -> dict[str, Any]:
    gid = parse_id(generation_id, "generation")
    return await service.generation_results(current_deps(), current_user().id, gid)


@blueprint.get("/generations/<generation_id>/export.zip")
@authenticated
async def export_zip(generation_id: str) -> Response:
    """The generation's exports as one zip, streamed: `<variation_key>/<format>.<ext>`
    for each succeeded pose and each format asked (`?formats=a,b`; default every one)."""
    deps, user = current_deps(), current_user()
    gid = parse_id(generation_id, "generation")
    wanted = requests.export_formats_arg(request.args.get("formats"))
    filename, entries = await service.export_entries(deps, user.id, gid, wanted)
    return Response(
        stream_zip(deps.storage, entries),
        content_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


@blueprint.post("/poses/<pose_id>/background")
@authenticated
@rate_limited("pose-generator.generate", user_identity)
async def change_background(pose_id: str) -> tuple[dict[str, Any], int, dict[str, str]]:
    """A new background for a made pose: a `pose.background` job of 10 credits."""
    key = await read_idempotency()
    target = parse_id(pose_id, "pose")
    background = requests.validate_background(await read_json())
    body, submission = await service.submit_background_change(
        current_deps(), current_user(), target, background, key
    )
    return accepted(body, submission)


@blueprint.post("/poses/<pose_id>/regenerate-export")
@authenticated
async def regenerate_export(pose_id: str) -> dict[str, Any]:
    """Write one export format of a made pose again (free: no provider is called)."""
    target = parse_id(pose_id, "pose")
    name = requests.validate_export(await read_json())
    pose = await service.regenerate_export(current_deps(), current_user().id, target, name)
    return {"pose": pose}


@blueprint.get("/stats")
@authenticated
async def stats() -> dict[str, Any]:
    return {"stats": await service.stats(current_deps(), current_user().id)}


# Pose requests and health -----------------------------------------------------------


@blueprint.post("/requests")
@authenticated
async def create_request() -> tuple[dict[str, Any], int]:
    body = pose_requests.validate_pose_request(await read_json())
    row = await service.create_request(current_deps(), current_user().id, body)
    return {"request": service.request_dict(row)}, 201


@blueprint.get("/requests")
@authenticated
async def list_requests() -> dict[str, Any]:
    rows, cursor = await service.list_requests(
        current_deps(),
        current_user().id,
        status="",
        limit=query_int("limit", 20, 1, 100),
        cursor=request.args.get("cursor"),
    )
    return {"requests": [service.request_dict(r) for r in rows], "next_cursor": cursor}


@blueprint.get("/admin/requests")
@admin_only
async def admin_list_requests() -> dict[str, Any]:
    rows, cursor = await service.list_requests(
        current_deps(),
        None,
        status=request.args.get("status", ""),
        limit=query_int("limit", 20, 1, 100),
        cursor=request.args.get("cursor"),
    )
    return {"requests": [service.request_dict(r) for r in rows], "next_cursor": cursor}


@blueprint.post("/admin/requests/<request_id>/<action>")
@admin_only
async def admin_decide(request_id: str, action: str) -> dict[str, Any]:
    """approve | reject (notes required) | start | complete; 409 when the request's status
    does not allow the action."""
    target = parse_id(request_id, "pose request")
    raw = await request.get_data(cache=True)
    decision = pose_requests.validate_admin_action(action, await read_json() if raw else {})
    row = await service.decide_request(current_deps(), target, decision)
    return {"request": service.request_dict(row)}


@blueprint.get("/health")
@rate_limited("health")
async def health() -> tuple[dict[str, Any], int]:
    """Queue counts of the app's job kinds and the state of its providers; 503 `degraded`
    while the pose provider's breaker is not closed (its jobs wait in the queue)."""
    body, healthy = await service.health(current_deps())
    return body, 200 if healthy else 503
