"""Pose Generator's domain (SPEC §8.2): projects, generations, the poses they made, pose
requests. Every function the routes call takes the service's `Deps` (routes never touch the
Store) and the user it acts for; another user's id is NotFound (the routes answer 404,
never 403). SQL lives in `queries.sql`. Avatars are the Avatar Creator's: read and recorded
through its service (SPEC §17).
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from lumiku.apps.avatar_creator import service as avatars
from lumiku.apps.pose_generator import pose_requests
from lumiku.apps.pose_generator.requests import COST_BACKGROUND_CHANGE
from lumiku.db.queries import load_queries
from lumiku.errors import Conflict, FieldError, NotFound, ValidationFailed
from lumiku.jobs import queue
from lumiku.jobs.models import decode_cursor, encode_cursor, new_job_id
from lumiku.jobs.service import submit_job
from lumiku.providers.exports import export
from lumiku.storage.base import check_key, new_key, prefix_of
from lumiku.storage.images import store_image, store_with_thumbnail
from lumiku.storage.signing import signed_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Collection, Mapping

    from lumiku.accounts.service import User
    from lumiku.apps.pose_generator.requests import Background, Generation, Project
    from lumiku.db.store import Store, Tx
    from lumiku.deps import Deps
    from lumiku.http.idempotency import Idempotency
    from lumiku.jobs.models import Job, Submission
    from lumiku.storage.base import Storage
    from lumiku.storage.images import CleanImage

APP_ID: Final = "pose-generator"
Q: Final = load_queries("lumiku.apps.pose_generator")
# Greater than every id: the first page has no cursor.
_NO_CURSOR: Final = uuid.UUID(int=2**128 - 1)
UPLOADS_GROUP: Final = "uploads"
_UPLOAD_EXTENSIONS: Final = ("png", "jpg", "webp")


class ProjectBusy(Conflict):
    code = "PROJECT_BUSY"
    title = "The project has a generation queued or running"


def now() -> datetime:
    return datetime.now(UTC)


def parse_id(raw: str, what: str) -> uuid.UUID:
    """A path id, or NotFound: a malformed id names nothing."""
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound(f"No such {what}.") from None


def _cursor(raw: str | None) -> uuid.UUID:
    if raw is None or raw == "":
        return _NO_CURSOR
    try:
        return decode_cursor(raw)
    except (ValueError, ValidationFailed):
        raise ValidationFailed([FieldError("cursor", "is not a valid cursor")]) from None


def _page(rows: list[Any], limit: int) -> tuple[list[Any], str | None]:
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_cursor(rows[-1]["id"]) if more and rows else None


def _time(value: Any) -> str | None:
    return None if value is None else value.isoformat()


# Projects ---------------------------------------------------------------------------------
# The project's avatar is the Avatar Creator's: its image is asked of that app's service, and
# linking it (create, update, a generation) is recorded in the avatar's usage history.


async def _owned_avatar_key(db: Store | Tx, user_id: uuid.UUID, avatar_id: uuid.UUID) -> str:
    """The image key of the user's avatar `avatar_id`; ValidationFailed naming `avatar_id`
    when it is not one of theirs (an unknown id and another user's look the same)."""
    key = await avatars.avatar_image_key(db, user_id, avatar_id)
    if key is None:
        raise ValidationFailed([FieldError("avatar_id", "is not one of your avatars")])
    return key


async def _record_avatar_use(
    tx: Tx, user_id: uuid.UUID, avatar_id: uuid.UUID, action: str, reference_id: uuid.UUID
) -> None:
    # NotFound: deleted meanwhile, and the project lost its avatar (ON DELETE SET NULL)
    with contextlib.suppress(NotFound):
        await avatars.record_usage(
            tx,
            avatar_id=avatar_id,
            user_id=user_id,
            app=APP_ID,
            action=action,
            reference_id=str(reference_id),
        )


async def find_project(
    db: Store | Tx, user_id: uuid.UUID, project_id: uuid.UUID
) -> dict[str, Any] | None:
    """The user's project as a dict with `avatar_image_key` (its avatar's image, None
    without one), or None."""
    row = await db.fetch_one(Q.project_by_id, project_id, user_id)
    return None if row is None else await _with_avatar(db, row)


async def _with_avatar(db: Store | Tx, row: Mapping[str, Any]) -> dict[str, Any]:
    project = dict(row)
    avatar_id = project["avatar_id"]
    key = None
    if avatar_id is not None:
        # one query per project with an avatar (a page is at most 100): the avatar is
        # another app's, so no join
        key = await avatars.avatar_image_key(db, project["user_id"], avatar_id)
    project["avatar_image_key"] = key
    return project


async def _project(db: Store | Tx, user_id: uuid.UUID, project_id: uuid.UUID) -> dict[str, Any]:
    project = await find_project(db, user_id, project_id)
    if project is None:
        raise NotFound("No such project.")
    return project


def project_dict(deps: Deps, project: Mapping[str, Any]) -> dict[str, Any]:
    key = project["avatar_image_key"] or project["image_key"]
    return {
        "id": str(project["id"]),
        "name": project["name"],
        "description": project["description"] or None,
        "avatar_id": None if project["avatar_id"] is None else str(project["avatar_id"]),
        "image_url": None if key is None else signed_url(deps, key),
        "created_at": _time(project["created_at"]),
        "updated_at": _time(project["updated_at"]),
    }


async def create_project(
    deps: Deps, user_id: uuid.UUID, project: Project, *, image: CleanImage | None = None
) -> dict[str, Any]:
    """Insert the project (its avatar checked to be the user's, and the use recorded in
    the avatar's history; or with its uploaded `image` stored) and answer it."""
    project_id = new_job_id()
    image_key = None
    if image is not None:
        stored = await store_with_thumbnail(
            deps.storage, image, app=APP_ID, user_id=user_id, group=project_id
        )
        image_key = stored.key
    async with deps.store.transaction() as tx:
        if project.avatar_id is not None:
            await _owned_avatar_key(tx, user_id, project.avatar_id)
        await tx.execute(
            Q.insert_project,
            project_id,
            user_id,
            project.name,
            project.description or "",
            project.avatar_id,
            image_key,
            now(),
        )
        if project.avatar_id is not None:
            await _record_avatar_use(tx, user_id, project.avatar_id, "project", project_id)
    return await get_project(deps, user_id, project_id)


async def get_project(deps: Deps, user_id: uuid.UUID, project_id: uuid.UUID) -> dict[str, Any]:
    return project_dict(deps, await _project(deps.store, user_id, project_id))


async def list_projects(
    deps: Deps, user_id: uuid.UUID, *, limit: int, cursor: str | None
) -> dict[str, Any]:
    rows = await deps.store.fetch_all(Q.projects_page, user_id, _cursor(cursor), limit + 1)
    page, next_cursor = _page(rows, limit)
    projects = [project_dict(deps, await _with_avatar(deps.store, r)) for r in page]
    return {"projects": projects, "next_cursor": next_cursor}


async def update_project(
    deps: Deps, user_id: uuid.UUID, project_id: uuid.UUID, changes: Mapping[str, Any]
) -> dict[str, Any]:
    """Apply the partial update of `validate_project_update` and answer the project; a
    newly linked avatar is recorded in its usage history."""
    async with deps.store.transaction() as tx:
        row = await tx.fetch_one(Q.lock_project, project_id, user_id)
        if row is None:
            raise NotFound("No such project.")
        avatar_id = changes.get("avatar_id", row["avatar_id"])
        linked = avatar_id is not None and avatar_id != row["avatar_id"]
        if linked:
            await _owned_avatar_key(tx, user_id, avatar_id)
        description = changes.get("description", row["description"]) or ""
        await tx.execute(
            Q.update_project,
            project_id,
            user_id,
            changes.get("name", row["name"]),
            description,
            avatar_id,
            now(),
        )
        if linked:
            await _record_avatar_use(tx, user_id, avatar_id, "project", project_id)
    return await get_project(deps, user_id, project_id)


async def delete_project(deps: Deps, user_id: uuid.UUID, project_id: uuid.UUID) -> None:
    """Delete the project, its generations and poses (rows cascade), then their files.
    ProjectBusy (409) while one of its generations is queued or running; the project row is
    locked meanwhile, so no generation can be submitted for it between check and delete."""
    async with deps.store.transaction() as tx:
        row = await tx.fetch_one(Q.lock_project, project_id, user_id)
        if row is None:
            raise NotFound("No such project.")
        if await tx.fetch_val(Q.active_generations, project_id):
            raise ProjectBusy("Wait for its generations to finish (or cancel them) first.")
        generations = [r["id"] for r in await tx.fetch_all(Q.project_generation_ids, project_id)]
        await tx.execute(Q.delete_project, project_id, user_id)
    for generation_id in generations:
        await deps.storage.delete_prefix(prefix_of(APP_ID, user_id, generation_id))
    await deps.storage.delete_prefix(prefix_of(APP_ID, user_id, project_id))


# Uploads ----------------------------------------------------------------------------------


async def store_background(deps: Deps, user_id: uuid.UUID, image: CleanImage) -> dict[str, Any]:
    """Keep an image for `background_mode: upload`; answers its `file_id` and URL."""
    key = await store_image(deps.storage, image, app=APP_ID, user_id=user_id, group=UPLOADS_GROUP)
    file_id = uuid.UUID(key.value.rsplit("/", 1)[1].split(".", 1)[0])
    return {"file_id": str(file_id), "url": signed_url(deps, key)}


async def upload_key(storage: Storage, user_id: uuid.UUID, file_id: uuid.UUID) -> str:
    """The stored key of the user's background upload `file_id` (the random name
    `POST /uploads/upload` gave it); ValidationFailed naming `background_file_id` when the
    user has no such upload."""
    for ext in _UPLOAD_EXTENSIONS:
        key = check_key(f"{APP_ID}/{user_id}/{UPLOADS_GROUP}/{file_id.hex}.{ext}")
        if await storage.exists(key):
            return key.value
    raise ValidationFailed([FieldError("background_file_id", "is not one of your uploads")])


# Generations ------------------------------------------------------------------------------


async def submit_generation(
    deps: Deps, user: User, generation: Generation, idempotency: Idempotency
) -> tuple[dict[str, Any], Submission]:
    """Price (server-side) and queue a generation: the answer's body (its ids, what was
    charged, a completion estimate) and the submission (an Idempotency-Key replay answers
    the first generation). The project's avatar, if any, records the use."""
    await _project(deps.store, user.id, generation.project_id)
    background = generation.background
    if background is not None and background.file_id is not None:
        await upload_key(deps.storage, user.id, background.file_id)
    generation_id = new_job_id()
    submission = await submit_job(
        deps,
        user,
        app=APP_ID,
        kind="pose.generate",
        payload=generation.as_payload(),
        cost=generation.cost,
        idempotency_key=idempotency.key,
        request_hash=idempotency.request_hash,
        extra=_generation_writer(generation_id, user.id, generation),
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
    return body, submission


def _generation_writer(
    generation_id: uuid.UUID, user_id: uuid.UUID, generation: Generation
) -> Callable[[Tx, Job], Awaitable[None]]:
    """The `extra` of `submit_job`: the generation row, in the job's transaction, after
    checking (under a row lock) that the project is still the user's; its avatar records
    the use."""

    async def write(tx: Tx, job: Job) -> None:
        project = await tx.fetch_one(Q.lock_project, generation.project_id, user_id)
        if project is None:
            raise NotFound("No such project.")
        await tx.execute(
            Q.insert_generation,
            generation_id,
            user_id,
            generation.project_id,
            job.id,
            generation.generation_type,
            generation.as_payload(),
            generation.total_poses,
            job.cost,
            now(),
        )
        if project["avatar_id"] is not None:
            await _record_avatar_use(tx, user_id, project["avatar_id"], "generate", generation_id)

    return write


async def _generation(store: Store, user_id: uuid.UUID, generation_id: uuid.UUID) -> Any:
    row = await store.fetch_one(Q.generation_by_id, generation_id, user_id)
    if row is None:
        raise NotFound("No such generation.")
    return row


async def get_generation(
    deps: Deps, user_id: uuid.UUID, generation_id: uuid.UUID
) -> dict[str, Any]:
    """The generation with its job's status, progress, result and error."""
    row = await _generation(deps.store, user_id, generation_id)
    job = await queue.get_job(deps.store, row["job_id"], user_id=user_id, is_admin=False)
    return {
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


async def _ordered_poses(store: Store, generation: Mapping[str, Any]) -> list[Any]:
    rows = await store.fetch_all(Q.generation_poses, generation["id"])
    return ordered(rows, generation["request"]["variation_keys"])


async def generation_results(
    deps: Deps, user_id: uuid.UUID, generation_id: uuid.UUID
) -> dict[str, Any]:
    """The generation's poses in variation order."""
    row = await _generation(deps.store, user_id, generation_id)
    poses = await _ordered_poses(deps.store, row)
    return {"generation_id": str(row["id"]), "poses": [pose_dict(deps, p) for p in poses]}


async def export_entries(
    deps: Deps, user_id: uuid.UUID, generation_id: uuid.UUID, wanted: Collection[str] | None
) -> tuple[str, list[tuple[str, str, datetime]]]:
    """The zip's file name and its entries: `<variation_key>/<format>.<ext>` for each
    succeeded pose and each format `wanted` (None: every one), with key and time."""
    row = await _generation(deps.store, user_id, generation_id)
    entries = []
    for pose in await _ordered_poses(deps.store, row):
        for name, key in sorted(pose["exports"].items()):
            if wanted is None or name in wanted:
                ext = key.rsplit(".", 1)[1]
                entries.append((f"{pose['variation_key']}/{name}.{ext}", key, pose["created_at"]))
    return f"poses-{row['id']}.zip", entries


def ordered(rows: list[Any], keys: list[str]) -> list[Any]:
    """`rows` in the order of the request's variation `keys`."""
    place = {key: index for index, key in enumerate(keys)}
    return sorted(rows, key=lambda r: (place.get(r["variation_key"], len(place)), r["id"]))


# Poses ------------------------------------------------------------------------------------


async def write_exports(
    deps: Deps, user_id: uuid.UUID, group: uuid.UUID, image: bytes, formats: list[str]
) -> dict[str, str]:
    """Each export format of `image`, stored; `{format: key}`."""
    keys = {}
    for name in formats:
        made = await export(image, name)
        key = new_key(APP_ID, user_id, made.format.extension, group=group)
        await deps.storage.put(key, made.data, made.format.content_type)
        keys[name] = key.value
    return keys


def pose_dict(deps: Deps, row: Mapping[str, Any]) -> dict[str, Any]:
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


async def _pose(store: Store, user_id: uuid.UUID, pose_id: uuid.UUID) -> Any:
    row = await store.fetch_one(Q.pose_by_id, pose_id, user_id)
    if row is None:
        raise NotFound("No such pose.")
    return row


async def submit_background_change(
    deps: Deps,
    user: User,
    pose_id: uuid.UUID,
    background: Background,
    idempotency: Idempotency,
) -> tuple[dict[str, Any], Submission]:
    """Queue a `pose.background` job (10 credits) for a made pose: the answer's body and
    the submission."""
    pose = await _pose(deps.store, user.id, pose_id)
    if pose["status"] != "succeeded":
        raise ValidationFailed([FieldError("pose_id", "the pose failed: it has no image")])
    if background.file_id is not None:
        await upload_key(deps.storage, user.id, background.file_id)
    submission = await submit_job(
        deps,
        user,
        app=APP_ID,
        kind="pose.background",
        payload={"pose_id": str(pose_id), "background": background.as_dict()},
        cost=COST_BACKGROUND_CHANGE,
        idempotency_key=idempotency.key,
        request_hash=idempotency.request_hash,
    )
    job = submission.job
    body = {"pose_id": str(pose_id), "job_id": str(job.id), "status": job.status}
    return {**body, "credit_charged": job.cost}, submission


async def regenerate_export(
    deps: Deps, user_id: uuid.UUID, pose_id: uuid.UUID, name: str
) -> dict[str, Any]:
    """Write one export format of a made pose again (free: no provider is called); the
    pose as it is now. The format's previous file is deleted."""
    pose = await _pose(deps.store, user_id, pose_id)
    if pose["image_key"] is None:
        raise NotFound("The pose has no image.")
    image = await deps.storage.get(pose["image_key"])
    made = await write_exports(deps, user_id, pose["generation_id"], image, [name])
    exports = {**pose["exports"], **made}
    await deps.store.execute(Q.update_pose_exports, pose_id, user_id, exports, now())
    old = pose["exports"].get(name)
    if old is not None:
        await deps.storage.delete(old)
    return pose_dict(deps, await _pose(deps.store, user_id, pose_id))


# Stats and health -------------------------------------------------------------------------


async def stats(deps: Deps, user_id: uuid.UUID) -> dict[str, int]:
    row = await deps.store.fetch_one(Q.user_stats, user_id)
    assert row is not None
    return {name: int(row[name]) for name in row.keys()}  # noqa: SIM118 - Records too


async def health(deps: Deps) -> tuple[dict[str, Any], bool]:
    """Queue counts of the app's job kinds and the state of its providers; healthy while
    the pose provider's breaker is closed (else its jobs wait in the queue)."""
    pose_ok = deps.providers.available("pose")
    body = {
        # a background breaker alone shows in `providers`: poses still render without it
        "status": "ok" if pose_ok else "degraded",
        "queue": await _queue_counts(deps.store),
        "providers": deps.providers.health(operations=("pose", "background")),
    }
    return body, pose_ok


async def _queue_counts(store: Store) -> dict[str, dict[str, int]]:
    """Jobs per status for each of the app's kinds (zeros included)."""
    statuses = ("queued", "running", "succeeded", "failed", "cancelled")
    counts = {kind: dict.fromkeys(statuses, 0) for kind in ("pose.generate", "pose.background")}
    for row in await store.fetch_all(Q.kind_status_counts):
        counts[row["kind"]][row["status"]] = int(row["jobs"])
    return counts


# Pose requests ----------------------------------------------------------------------------


def request_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "user_id": str(row["user_id"]),
        "pose_name": row["name"],
        "description": row["description"],
        "category_id": row["category_id"],
        "reference_image_url": row["reference_url"],
        "status": row["status"],
        "notes": row["notes"] or None,
        "created_at": _time(row["created_at"]),
        "updated_at": _time(row["updated_at"]),
    }


async def create_request(deps: Deps, user_id: uuid.UUID, request: pose_requests.PoseRequest) -> Any:
    store = deps.store
    request_id = new_job_id()
    await store.execute(
        Q.insert_request,
        request_id,
        user_id,
        request.pose_name,
        request.description,
        request.category_id,
        request.reference_image_url,
        now(),
    )
    return await store.fetch_one(Q.request_by_id, request_id)


async def list_requests(
    deps: Deps, user_id: uuid.UUID | None, *, status: str, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """The user's requests (or, with `user_id` None, everyone's filtered by `status`)."""
    store = deps.store
    before = _cursor(cursor)
    if user_id is None:
        if status and status not in pose_requests.REQUEST_STATUSES:
            raise ValidationFailed([FieldError("status", "is not a request status")])
        rows = await store.fetch_all(Q.admin_requests_page, before, status, limit + 1)
    else:
        rows = await store.fetch_all(Q.user_requests_page, user_id, before, limit + 1)
    return _page(rows, limit)


async def decide_request(
    deps: Deps, request_id: uuid.UUID, decision: pose_requests.Decision
) -> Any:
    """Apply an admin's decision under the row lock: the status it moves from is the one
    read FOR UPDATE, so two admins cannot both approve. 409 when it does not apply."""
    store = deps.store
    async with store.transaction() as tx:
        row = await tx.fetch_one(Q.lock_request, request_id)
        if row is None:
            raise NotFound("No such pose request.")
        status = pose_requests.transition(row["status"], decision.action)
        notes = decision.notes if decision.notes is not None else row["notes"]
        await tx.execute(Q.update_request, request_id, status, notes or "", now())
    return await store.fetch_one(Q.request_by_id, request_id)
