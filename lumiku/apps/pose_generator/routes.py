"""Pose Generator routes under `/api/apps/pose-generator` (SPEC §8.2): the library
(public), projects, generations and their files, pose requests (admins decide), the app's
health."""

from __future__ import annotations

import uuid
from typing import Any, Final

from quart import Blueprint, Response, request

from lumiku.apps.pose_generator import library, pose_requests, requests, service
from lumiku.apps.pose_generator.archive import stream_zip
from lumiku.apps.pose_generator.handlers import write_exports
from lumiku.apps.pose_generator.service import APP_ID, Q, parse_id
from lumiku.errors import FieldError, NotFound, ValidationFailed
from lumiku.http.auth import admin_only, authenticated, current_user, user_identity
from lumiku.http.bodies import query_int, read_json
from lumiku.http.context import current_deps
from lumiku.http.idempotency import accepted, read_idempotency
from lumiku.http.ratelimit import rate_limited
from lumiku.http.uploads import read_image_upload
from lumiku.jobs import queue
from lumiku.jobs.models import new_job_id
from lumiku.jobs.service import submit_job
from lumiku.storage.images import store_image, store_with_thumbnail
from lumiku.storage.signing import signed_url

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
    deps = current_deps()
    rows, cursor = await service.list_projects(
        deps.store,
        current_user().id,
        limit=query_int("limit", 20, 1, 100),
        cursor=request.args.get("cursor"),
    )
    return {"projects": [service.project_dict(deps, r) for r in rows], "next_cursor": cursor}


@blueprint.post("/projects")
@authenticated
@rate_limited("pose-generator.project_create", user_identity)
async def create_project() -> tuple[dict[str, Any], int]:
    deps, user = current_deps(), current_user()
    project = requests.validate_project_create(await read_json())
    row = await service.create_project(deps.store, user.id, project)
    return {"project": service.project_dict(deps, row)}, 201


@blueprint.post("/projects/upload")
@authenticated
@rate_limited("pose-generator.upload", user_identity)
async def create_project_from_upload() -> tuple[dict[str, Any], int]:
    """A project whose image is the uploaded one (multipart: `image`, `name`,
    `description`)."""
    deps, user = current_deps(), current_user()
    form = await read_image_upload(deps.settings)
    project = requests.validate_project_create(dict(form.fields), has_image=True)
    project_id = new_job_id()
    stored = await store_with_thumbnail(
        deps.storage, form.image, app=APP_ID, user_id=user.id, group=project_id
    )
    row = await service.create_project(
        deps.store, user.id, project, project_id=project_id, image_key=stored.key
    )
    return {"project": service.project_dict(deps, row)}, 201


@blueprint.get("/projects/<uuid:project_id>")
@authenticated
async def get_project(project_id: uuid.UUID) -> dict[str, Any]:
    deps = current_deps()
    row = await service.get_project(deps.store, current_user().id, project_id)
    return {"project": service.project_dict(deps, row)}


@blueprint.put("/projects/<uuid:project_id>")
@authenticated
async def update_project(project_id: uuid.UUID) -> dict[str, Any]:
    deps = current_deps()
    changes = requests.validate_project_update(await read_json())
    row = await service.update_project(deps.store, current_user().id, project_id, changes)
    return {"project": service.project_dict(deps, row)}


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
    deps, user = current_deps(), current_user()
    form = await read_image_upload(deps.settings)
    key = await store_image(
        deps.storage, form.image, app=APP_ID, user_id=user.id, group=service.UPLOADS_GROUP
    )
    file_id = uuid.UUID(key.value.rsplit("/", 1)[1].split(".", 1)[0])
    return {"file_id": str(file_id), "url": signed_url(deps, key)}, 201


# Generations ------------------------------------------------------------------------------


@blueprint.post("/generate")
@authenticated
@rate_limited("pose-generator.generate", user_identity)
async def generate() -> tuple[dict[str, Any], int, dict[str, str]]:
    """Validate, price (server-side) and queue a generation: 202 with its ids, what was
    charged and a completion estimate. Idempotency-Key replays the first answer."""
    deps, user = current_deps(), current_user()
    key = await read_idempotency()
    generation = requests.validate_generate(await read_json())
    await service.get_project(deps.store, user.id, generation.project_id)
    background = generation.background
    if background is not None and background.file_id is not None:
        await service.upload_key(deps.storage, user.id, background.file_id)
    generation_id = new_job_id()
    submission = await submit_job(
        deps,
        user,
        app=APP_ID,
        kind="pose.generate",
        payload=generation.as_payload(),
        cost=generation.cost,
        idempotency_key=key.key,
        request_hash=key.request_hash,
        extra=service.generation_writer(generation_id, user.id, generation),
    )
    job = submission.job
    if submission.replayed:
        row = await deps.store.fetch_one(Q.generation_by_job, job.id)
        assert row is not None
        generation_id = row["id"]
    body = {
        "generation_id": str(generation_id),
        "job_id": str(job.id),
        "status": job.status,
        "total_poses": generation.total_poses,
        "credit_charged": job.cost,
        "estimated_completion_s": generation.estimated_completion_s(),
    }
    return accepted(body, submission)


def _pose_dict(row: Any) -> dict[str, Any]:
    deps = current_deps()

    def url(key: str | None) -> str | None:
        return None if key is None else signed_url(deps, key)

    return {
        "id": str(row["id"]),
        "generation_id": str(row["generation_id"]),
        "variation_key": row["variation_key"],
        "library_pose_id": row["library_pose_id"],
        "status": row["status"],
        "error": row["error"],
        "cost": int(row["cost"]),
        "image_url": url(row["image_key"]),
        "skeleton_url": url(row["skeleton_key"]),
        "exports": {name: url(key) for name, key in sorted(row["exports"].items())},
        "created_at": row["created_at"].isoformat(),
    }


@blueprint.get("/generations/<generation_id>")
@authenticated
async def get_generation(generation_id: str) -> dict[str, Any]:
    deps, user = current_deps(), current_user()
    row = await service.get_generation(deps.store, user.id, parse_id(generation_id, "generation"))
    job = await queue.get_job(deps.store, row["job_id"], user_id=user.id, is_admin=False)
    return {
        "generation": {
            "id": str(row["id"]),
            "project_id": str(row["project_id"]),
            "job_id": str(row["job_id"]),
            "generation_type": row["generation_type"],
            "total_poses": int(row["total_poses"]),
            "credit_charged": int(row["credit_charged"]),
            "request": row["request"],
            "status": job.status,
            "progress": job.as_dict()["progress"],
            "result": job.result,
            "error": None if job.error is None else job.as_dict()["error"],
            "refunded": job.refunded,
            "created_at": row["created_at"].isoformat(),
        }
    }


@blueprint.get("/generations/<generation_id>/results")
@authenticated
async def results(generation_id: str) -> dict[str, Any]:
    deps, user = current_deps(), current_user()
    row = await service.get_generation(deps.store, user.id, parse_id(generation_id, "generation"))
    poses = service.ordered(
        await service.generation_poses(deps.store, row["id"]), row["request"]["variation_keys"]
    )
    return {"generation_id": str(row["id"]), "poses": [_pose_dict(p) for p in poses]}


@blueprint.get("/generations/<generation_id>/export.zip")
@authenticated
async def export_zip(generation_id: str) -> Response:
    """The generation's exports as one zip, streamed: `<variation_key>/<format>.<ext>`
    for each succeeded pose and each format asked (`?formats=a,b`; default every one)."""
    deps, user = current_deps(), current_user()
    row = await service.get_generation(deps.store, user.id, parse_id(generation_id, "generation"))
    wanted = requests.export_formats_arg(request.args.get("formats"))
    poses = service.ordered(
        await service.generation_poses(deps.store, row["id"]), row["request"]["variation_keys"]
    )
    entries = []
    for pose in poses:
        for name, key in sorted(pose["exports"].items()):
            if wanted is None or name in wanted:
                ext = key.rsplit(".", 1)[1]
                entries.append((f"{pose['variation_key']}/{name}.{ext}", key, pose["created_at"]))
    filename = f"poses-{row['id']}.zip"
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
    deps, user = current_deps(), current_user()
    key = await read_idempotency()
    target = parse_id(pose_id, "pose")
    background = requests.validate_background(await read_json())
    pose = await service.get_pose(deps.store, user.id, target)
    if pose["status"] != "succeeded":
        raise ValidationFailed([FieldError("pose_id", "the pose failed: it has no image")])
    if background.file_id is not None:
        await service.upload_key(deps.storage, user.id, background.file_id)
    submission = await submit_job(
        deps,
        user,
        app=APP_ID,
        kind="pose.background",
        payload={"pose_id": str(target), "background": background.as_dict()},
        cost=requests.COST_BACKGROUND_CHANGE,
        idempotency_key=key.key,
        request_hash=key.request_hash,
    )
    job = submission.job
    body = {"pose_id": str(target), "job_id": str(job.id), "status": job.status}
    return accepted({**body, "credit_charged": job.cost}, submission)


@blueprint.post("/poses/<pose_id>/regenerate-export")
@authenticated
async def regenerate_export(pose_id: str) -> dict[str, Any]:
    """Write one export format of a made pose again (free: no provider is called)."""
    deps, user = current_deps(), current_user()
    target = parse_id(pose_id, "pose")
    name = requests.validate_export(await read_json())
    pose = await service.get_pose(deps.store, user.id, target)
    if pose["image_key"] is None:
        raise NotFound("The pose has no image.")
    image = await deps.storage.get(pose["image_key"])
    made = await write_exports(deps, user.id, pose["generation_id"], image, [name])
    exports = {**pose["exports"], **made}
    await deps.store.execute(Q.update_pose_exports, target, user.id, exports, service.now())
    old = pose["exports"].get(name)
    if old is not None:
        await deps.storage.delete(old)
    return {"pose": _pose_dict(await service.get_pose(deps.store, user.id, target))}


@blueprint.get("/stats")
@authenticated
async def stats() -> dict[str, Any]:
    return {"stats": await service.stats(current_deps().store, current_user().id)}


# Pose requests and health -----------------------------------------------------------


@blueprint.post("/requests")
@authenticated
async def create_request() -> tuple[dict[str, Any], int]:
    body = pose_requests.validate_pose_request(await read_json())
    row = await service.create_request(current_deps().store, current_user().id, body)
    return {"request": service.request_dict(row)}, 201


@blueprint.get("/requests")
@authenticated
async def list_requests() -> dict[str, Any]:
    rows, cursor = await service.list_requests(
        current_deps().store,
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
        current_deps().store,
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
    row = await service.decide_request(current_deps().store, target, decision)
    return {"request": service.request_dict(row)}


@blueprint.get("/health")
@rate_limited("health")
async def health() -> tuple[dict[str, Any], int]:
    """Queue counts of the app's job kinds and the state of its providers; 503 `degraded`
    while the pose provider's breaker is not closed (its jobs wait in the queue)."""
    deps = current_deps()
    providers = deps.providers.health(operations=("pose", "background"))
    pose_ok = deps.providers.available("pose")
    body = {
        # a background breaker alone shows in `providers`: poses still render without it
        "status": "ok" if pose_ok else "degraded",
        "queue": await service.queue_counts(deps.store),
        "providers": providers,
    }
    return body, 200 if pose_ok else 503
