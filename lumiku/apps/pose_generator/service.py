"""Pose Generator storage of record (SPEC §8.2): projects, generations, the poses they made,
pose requests. Every function takes the user it acts for, and another user's id is
NotFound (the routes answer 404, never 403). SQL lives in `queries.sql`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from lumiku.apps.pose_generator import pose_requests
from lumiku.db.queries import load_queries
from lumiku.errors import Conflict, FieldError, NotFound, ValidationFailed
from lumiku.jobs.models import decode_cursor, encode_cursor, new_job_id
from lumiku.storage.base import check_key, prefix_of
from lumiku.storage.signing import signed_url

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from lumiku.apps.pose_generator.requests import Generation, Project
    from lumiku.db.store import Store, Tx
    from lumiku.deps import Deps
    from lumiku.jobs.models import Job
    from lumiku.storage.base import Storage

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


async def owned_avatar_key(store: Store | Tx, user_id: uuid.UUID, avatar_id: uuid.UUID) -> str:
    """The image key of the user's avatar `avatar_id`; ValidationFailed naming `avatar_id`
    when it is not one of theirs (an unknown id and another user's look the same)."""
    row = await store.fetch_one(Q.owned_avatar, avatar_id, user_id)
    if row is None:
        raise ValidationFailed([FieldError("avatar_id", "is not one of your avatars")])
    return str(row["image_key"])


def project_dict(deps: Deps, row: Mapping[str, Any]) -> dict[str, Any]:
    key = row["avatar_image_key"] or row["image_key"]
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "description": row["description"] or None,
        "avatar_id": None if row["avatar_id"] is None else str(row["avatar_id"]),
        "image_url": None if key is None else signed_url(deps, key),
        "created_at": _time(row["created_at"]),
        "updated_at": _time(row["updated_at"]),
    }


async def create_project(
    store: Store,
    user_id: uuid.UUID,
    project: Project,
    *,
    project_id: uuid.UUID | None = None,
    image_key: str | None = None,
) -> Any:
    """Insert the project (its avatar checked to be the user's) and return its row."""
    if project.avatar_id is not None:
        await owned_avatar_key(store, user_id, project.avatar_id)
    project_id = project_id or new_job_id()
    await store.execute(
        Q.insert_project,
        project_id,
        user_id,
        project.name,
        project.description or "",
        project.avatar_id,
        image_key,
        now(),
    )
    return await get_project(store, user_id, project_id)


async def get_project(store: Store | Tx, user_id: uuid.UUID, project_id: uuid.UUID) -> Any:
    row = await store.fetch_one(Q.project_by_id, project_id, user_id)
    if row is None:
        raise NotFound("No such project.")
    return row


async def list_projects(
    store: Store, user_id: uuid.UUID, *, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    rows = await store.fetch_all(Q.projects_page, user_id, _cursor(cursor), limit + 1)
    return _page(rows, limit)


async def update_project(
    store: Store, user_id: uuid.UUID, project_id: uuid.UUID, changes: Mapping[str, Any]
) -> Any:
    """Apply the partial update of `validate_project_update`; returns the new row."""
    if changes.get("avatar_id") is not None:
        await owned_avatar_key(store, user_id, changes["avatar_id"])
    async with store.transaction() as tx:
        row = await tx.fetch_one(Q.lock_project, project_id, user_id)
        if row is None:
            raise NotFound("No such project.")
        description = changes.get("description", row["description"]) or ""
        await tx.execute(
            Q.update_project,
            project_id,
            user_id,
            changes.get("name", row["name"]),
            description,
            changes.get("avatar_id", row["avatar_id"]),
            now(),
        )
    return await get_project(store, user_id, project_id)


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


def generation_writer(
    generation_id: uuid.UUID, user_id: uuid.UUID, generation: Generation
) -> Callable[[Tx, Job], Awaitable[None]]:
    """The `extra` of `submit_job`: the generation row, in the job's transaction, after
    checking (under a row lock) that the project is still the user's."""

    async def write(tx: Tx, job: Job) -> None:
        if await tx.fetch_one(Q.lock_project, generation.project_id, user_id) is None:
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

    return write


async def get_generation(store: Store, user_id: uuid.UUID, generation_id: uuid.UUID) -> Any:
    row = await store.fetch_one(Q.generation_by_id, generation_id, user_id)
    if row is None:
        raise NotFound("No such generation.")
    return row


async def generation_poses(store: Store, generation_id: uuid.UUID) -> list[Any]:
    """The generation's poses (put them in variation order with `ordered`)."""
    return await store.fetch_all(Q.generation_poses, generation_id)


def ordered(rows: list[Any], keys: list[str]) -> list[Any]:
    """`rows` in the order of the request's variation `keys`."""
    place = {key: index for index, key in enumerate(keys)}
    return sorted(rows, key=lambda r: (place.get(r["variation_key"], len(place)), r["id"]))


async def get_pose(store: Store, user_id: uuid.UUID, pose_id: uuid.UUID) -> Any:
    row = await store.fetch_one(Q.pose_by_id, pose_id, user_id)
    if row is None:
        raise NotFound("No such pose.")
    return row


async def stats(store: Store, user_id: uuid.UUID) -> dict[str, int]:
    row = await store.fetch_one(Q.user_stats, user_id)
    assert row is not None
    return {name: int(row[name]) for name in row.keys()}  # noqa: SIM118 - Records too


async def queue_counts(store: Store) -> dict[str, dict[str, int]]:
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


async def create_request(
    store: Store, user_id: uuid.UUID, request: pose_requests.PoseRequest
) -> Any:
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
    store: Store, user_id: uuid.UUID | None, *, status: str, limit: int, cursor: str | None
) -> tuple[list[Any], str | None]:
    """The user's requests (or, with `user_id` None, everyone's filtered by `status`)."""
    before = _cursor(cursor)
    if user_id is None:
        if status and status not in pose_requests.REQUEST_STATUSES:
            raise ValidationFailed([FieldError("status", "is not a request status")])
        rows = await store.fetch_all(Q.admin_requests_page, before, status, limit + 1)
    else:
        rows = await store.fetch_all(Q.user_requests_page, user_id, before, limit + 1)
    return _page(rows, limit)


async def decide_request(
    store: Store, request_id: uuid.UUID, decision: pose_requests.Decision
) -> Any:
    """Apply an admin's decision under the row lock: the status it moves from is the one
    read FOR UPDATE, so two admins cannot both approve. 409 when it does not apply."""
    async with store.transaction() as tx:
        row = await tx.fetch_one(Q.lock_request, request_id)
        if row is None:
            raise NotFound("No such pose request.")
        status = pose_requests.transition(row["status"], decision.action)
        notes = decision.notes if decision.notes is not None else row["notes"]
        await tx.execute(Q.update_request, request_id, status, notes or "", now())
    return await store.fetch_one(Q.request_by_id, request_id)
