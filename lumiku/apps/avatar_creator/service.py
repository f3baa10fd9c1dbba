"""Avatar Creator's domain (SPEC §8.1): projects, avatars, generations, stats.

Every function takes the service's `Deps` and the acting user; routes never touch the Store.
A project, avatar or generation of someone else reads as missing (`NotFound`), never as
forbidden. Avatars leave this module as JSON-ready dicts carrying signed URLs of their
image and thumbnail. Uploads live in `uploads.py`, the job handler in `handlers.py`.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

import trio

from lumiku.credits import ledger
from lumiku.db.queries import load_queries
from lumiku.errors import FieldError, NotFound, StorageError, ValidationFailed
from lumiku.jobs.models import decode_cursor, encode_cursor, new_job_id
from lumiku.jobs.service import submit_job
from lumiku.storage.base import prefix_of
from lumiku.storage.signing import signed_url

if TYPE_CHECKING:
    from lumiku.accounts.service import User
    from lumiku.apps.avatar_creator.requests import AvatarGeneration, Project
    from lumiku.db.store import Row, Store, Tx
    from lumiku.deps import Deps
    from lumiku.jobs.models import Job, Submission

Q: Final = load_queries("lumiku.apps.avatar_creator")

APP_ID: Final = "avatar-creator"
KIND_GENERATE: Final = "avatar.generate"
KIND_FROM_PRESET: Final = "avatar.from_preset"
UPLOAD_REF_TYPE: Final = "avatar_upload"
MAX_PAGE: Final = 100
CLEANUP_BUDGET_S: Final = 10.0
_NO_CURSOR: Final = UUID(int=2**128 - 1)  # above every id: the first page


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _before(limit: int, cursor: str | None) -> UUID:
    """The id a page starts below; ValidationFailed for a bad limit or cursor."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed([FieldError("limit", f"must be between 1 and {MAX_PAGE}")])
    return _NO_CURSOR if cursor is None else decode_cursor(cursor)


def _page_cursor(rows: list[Row], limit: int) -> str | None:
    return encode_cursor(rows[limit - 1]["id"]) if len(rows) > limit else None


# Views ------------------------------------------------------------------------------------


def project_view(row: Row) -> dict[str, Any]:
    view = {
        "id": str(row["id"]),
        "name": row["name"],
        "description": row["description"] or None,
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }
    if "avatar_count" in row:
        view["avatar_count"] = int(row["avatar_count"])
    return view


def avatar_view(deps: Deps, row: Row) -> dict[str, Any]:
    """An avatar for the API, with signed URLs of its image and thumbnail (SPEC §10)."""
    return {
        "id": str(row["id"]),
        "project_id": str(row["project_id"]),
        "name": row["name"],
        "source_type": row["source_type"],
        "image_key": row["image_key"],
        "image_url": signed_url(deps, row["image_key"]),
        "thumbnail_key": row["thumbnail_key"],
        "thumbnail_url": signed_url(deps, row["thumbnail_key"]),
        "width": row["width"],
        "height": row["height"],
        "persona": row["persona"],
        "attributes": row["attributes"],
        "prompt": row["prompt"],
        "preset_id": row["preset_id"],
        "seed": row["seed"],
        "generation_id": None if row["generation_id"] is None else str(row["generation_id"]),
        "usage_count": row["usage_count"],
        "last_used_at": _iso(row["last_used_at"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


# Projects ---------------------------------------------------------------------------------


async def create_project(deps: Deps, user: User, project: Project) -> dict[str, Any]:
    row = await deps.store.fetch_one(
        Q.insert_project, new_job_id(), user.id, project.name, project.description or "", _now()
    )
    assert row is not None
    return project_view(row)


async def list_projects(
    deps: Deps, user: User, *, limit: int = 20, cursor: str | None = None
) -> dict[str, Any]:
    """The user's projects newest first (with their avatar counts), `next_cursor` for more."""
    rows = await deps.store.fetch_all(Q.projects_page, user.id, _before(limit, cursor), limit + 1)
    return {
        "projects": [project_view(r) for r in rows[:limit]],
        "next_cursor": _page_cursor(rows, limit),
    }


async def project_row(deps: Deps, user: User, project_id: UUID) -> Row:
    row = await deps.store.fetch_one(Q.project_by_id, project_id, user.id)
    if row is None:
        raise NotFound("No such project.")
    return row


async def get_project(deps: Deps, user: User, project_id: UUID) -> dict[str, Any]:
    """The project with its avatars (newest first); NotFound for anyone else's."""
    row = await project_row(deps, user, project_id)
    avatars = await deps.store.fetch_all(Q.project_avatars, project_id, user.id)
    return {**project_view(row), "avatars": [avatar_view(deps, a) for a in avatars]}


async def update_project(
    deps: Deps, user: User, project_id: UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    """Apply a partial update (`requests.validate_project_update`)."""
    current = await project_row(deps, user, project_id)
    name = changes.get("name", current["name"])
    description = changes.get("description", current["description"]) or ""
    row = await deps.store.fetch_one(
        Q.update_project, project_id, user.id, name, description, _now()
    )
    if row is None:
        raise NotFound("No such project.")
    return project_view(row)


async def delete_project(deps: Deps, user: User, project_id: UUID) -> None:
    """Delete the project, its avatars and generations (the rows cascade), then their files:
    each avatar's storage group and each generation's (which also holds the files of an
    attempt that died before saving its avatar). Files go after the commit, so a failed
    delete leaves the project whole; a file that cannot be removed (StorageError) is left
    behind rather than failing the request."""
    await project_row(deps, user, project_id)
    avatars = await deps.store.fetch_all(Q.project_avatars, project_id, user.id)
    generations = await deps.store.fetch_all(Q.project_generation_ids, project_id)
    await deps.store.execute(Q.delete_project, project_id, user.id)
    groups = {_group_of(a) for a in avatars} | {str(g["id"]) for g in generations}
    await _delete_groups(deps, user.id, groups)


def _group_of(avatar: Row) -> str:
    """The storage group an avatar's files are under: its generation, or itself (uploads)."""
    return str(avatar["generation_id"] or avatar["id"])


async def delete_generation_files(deps: Deps, user_id: UUID, generation_id: UUID) -> None:
    """Remove the files of a generation's storage group (its avatar's image and thumbnail,
    and whatever an attempt left); a file that cannot be removed is left behind."""
    await _delete_groups(deps, user_id, {str(generation_id)})


async def _delete_groups(deps: Deps, user_id: UUID, groups: set[str]) -> None:
    with trio.move_on_after(CLEANUP_BUDGET_S, shield=True):
        for group in sorted(groups):
            with contextlib.suppress(StorageError):
                await deps.storage.delete_prefix(prefix_of(APP_ID, user_id, group))


# Avatars ----------------------------------------------------------------------------------


async def _avatar_row(deps: Deps, user: User, avatar_id: UUID) -> Row:
    row = await deps.store.fetch_one(Q.avatar_by_id, avatar_id, user.id)
    if row is None:
        raise NotFound("No such avatar.")
    return row


async def get_avatar(deps: Deps, user: User, avatar_id: UUID) -> dict[str, Any]:
    return avatar_view(deps, await _avatar_row(deps, user, avatar_id))


_PERSONA_KEYS: Final = {
    "persona_name": "name",
    "persona_age": "age",
    "persona_personality": "personality",
    "persona_background": "background",
}


async def update_avatar(
    deps: Deps, user: User, avatar_id: UUID, changes: dict[str, Any]
) -> dict[str, Any]:
    """Apply a partial update (`requests.validate_avatar_update`): name, persona, attributes."""
    current = await _avatar_row(deps, user, avatar_id)
    name = changes.get("name") or current["name"]
    persona = dict(current["persona"])
    attributes = dict(current["attributes"])
    for key, value in changes.items():
        if key in _PERSONA_KEYS:
            persona[_PERSONA_KEYS[key]] = list(value) if isinstance(value, tuple) else value
        elif key != "name":
            attributes[key] = value
    row = await deps.store.fetch_one(
        Q.update_avatar, avatar_id, user.id, name, persona, attributes, _now()
    )
    if row is None:
        raise NotFound("No such avatar.")
    return avatar_view(deps, row)


async def delete_avatar(deps: Deps, user: User, avatar_id: UUID) -> None:
    """Delete the avatar (its usage rows cascade), then its files."""
    row = await _avatar_row(deps, user, avatar_id)
    await deps.store.execute(Q.delete_avatar, avatar_id, user.id)
    await _delete_groups(deps, user.id, {_group_of(row)})


async def usage_history(
    deps: Deps, user: User, avatar_id: UUID, *, limit: int = 20, cursor: str | None = None
) -> dict[str, Any]:
    """Where the avatar was used (e.g. by Pose Generator), newest first."""
    await _avatar_row(deps, user, avatar_id)
    before = _before(limit, cursor)
    rows = await deps.store.fetch_all(Q.avatar_usage_page, avatar_id, user.id, before, limit + 1)
    usage = [
        {
            "id": str(r["id"]),
            "app": r["app"],
            "action": r["action"],
            "reference_id": r["reference_id"],
            "created_at": _iso(r["created_at"]),
        }
        for r in rows[:limit]
    ]
    return {"usage": usage, "next_cursor": _page_cursor(rows, limit)}


async def avatar_image_key(db: Store | Tx, user_id: UUID, avatar_id: UUID) -> str | None:
    """For other apps (SPEC §17: they never read this app's tables): the storage key of
    the image of the user's avatar `avatar_id`, None when it is not one of theirs."""
    row = await db.fetch_one(Q.avatar_image_key, avatar_id, user_id)
    return None if row is None else str(row["image_key"])


async def record_usage(
    tx: Tx, *, avatar_id: UUID, user_id: UUID, app: str, action: str, reference_id: str
) -> None:
    """Note that another app used the avatar (e.g. Pose Generator, in the transaction of
    the work that used it): one usage row, `usage_count` + 1, `last_used_at` now. Raises
    NotFound when the avatar is not the user's."""
    now = _now()
    if await tx.execute(Q.count_usage, avatar_id, user_id, now) != 1:
        raise NotFound("No such avatar.")
    await tx.execute(
        Q.insert_usage, new_job_id(), avatar_id, user_id, app, action, reference_id, now
    )


# Generations ------------------------------------------------------------------------------


async def submit_generation(
    deps: Deps,
    user: User,
    project_id: UUID,
    generation: AvatarGeneration,
    *,
    idempotency_key: str | None = None,
    request_hash: str | None = None,
) -> tuple[dict[str, Any], Submission]:
    """Charge and queue the generation's job with its `avatar_generations` row, in one
    transaction (`submit_job`); an Idempotency-Key replay answers with the first
    generation (the Submission says whether it was one). Raises NotFound (project),
    InsufficientCredits and the Idempotency-Key errors."""
    await project_row(deps, user, project_id)
    generation_id = new_job_id()
    request = generation.as_payload()
    payload = {
        **request,
        "generation_id": str(generation_id),
        "project_id": str(project_id),
        "cost": generation.cost,
    }

    async def insert_generation(tx: Tx, job: Job) -> None:
        await tx.execute(
            Q.insert_generation,
            generation_id,
            user.id,
            project_id,
            job.id,
            generation.source_type,
            request,
            job.cost,
            job.created_at,
        )

    kind = KIND_FROM_PRESET if generation.source_type == "from_preset" else KIND_GENERATE
    submission = await submit_job(
        deps,
        user,
        app=APP_ID,
        kind=kind,
        payload=payload,
        cost=generation.cost,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        extra=insert_generation,
    )
    job = submission.job
    row = await deps.store.fetch_one(Q.generation_by_job, job.id, user.id)
    assert row is not None
    body = {
        "generation": await _generation_view(deps, row),
        "job_id": str(job.id),
        "credit_used": job.cost if submission.replayed else submission.charged,
        "credit_balance": await ledger.balance(deps.store, user.id),
    }
    return body, submission


async def get_generation(deps: Deps, user: User, generation_id: UUID) -> dict[str, Any]:
    """The generation with its job's status and progress, and its avatar once made."""
    row = await deps.store.fetch_one(Q.generation_by_id, generation_id, user.id)
    if row is None:
        raise NotFound("No such generation.")
    return {"generation": await _generation_view(deps, row)}


async def _generation_view(deps: Deps, row: Row) -> dict[str, Any]:
    avatar = await deps.store.fetch_one(Q.avatar_by_generation, row["id"])
    return {
        "id": str(row["id"]),
        "project_id": str(row["project_id"]),
        "job_id": str(row["job_id"]),
        "source_type": row["source_type"],
        "status": row["status"],
        "progress": row["progress"],
        "error": row["error"],
        "credit_charged": row["credit_charged"],
        "credit_refunded": row["refunded"],
        "request": row["request"],
        "created_at": _iso(row["created_at"]),
        "avatar": None if avatar is None else avatar_view(deps, avatar),
    }


# Stats ------------------------------------------------------------------------------------


async def stats(deps: Deps, user: User) -> dict[str, Any]:
    """Avatars per source type, projects, and the credits spent here (generations: charged
    minus refunded; uploads: their charges)."""
    rows = await deps.store.fetch_all(Q.avatar_counts, user.id)
    by_source = {"upload": 0, "text_to_image": 0, "from_preset": 0}
    by_source.update({r["source_type"]: int(r["avatars"]) for r in rows})
    generated = await deps.store.fetch_val(Q.generation_credits, user.id, APP_ID)
    uploaded = await deps.store.fetch_val(Q.upload_credits, user.id, UPLOAD_REF_TYPE)
    return {
        "projects": int(await deps.store.fetch_val(Q.project_count, user.id)),
        "avatars": sum(by_source.values()),
        "avatars_by_source_type": by_source,
        "credits_spent": int(generated or 0) + int(uploaded or 0),
    }
