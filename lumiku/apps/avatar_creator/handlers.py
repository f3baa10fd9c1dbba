"""The job handler of `avatar.generate` and `avatar.from_preset` (SPEC §8.1).

One generation: render with the avatar provider (the payload carries the provider prompt,
the attributes, the size and the seed), store the image and its 300×300 thumbnail under the
generation's storage group, and insert the avatar. Progress goes out in four steps:
rendering (and each stage the provider reports), storing, saving, done.

Running again is safe: the avatar is unique per generation, so a job that crashed after
saving finds its avatar and returns it; one that crashed before saving first clears what
the earlier attempt stored. Provider errors propagate: the worker retries or fails the job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

import trio

from lumiku.apps.avatar_creator.service import APP_ID, CLEANUP_BUDGET_S, Q
from lumiku.errors import ClientError, Permanent
from lumiku.jobs.kinds import Outcome
from lumiku.jobs.models import new_job_id
from lumiku.providers.base import AvatarAttributes, AvatarRequest
from lumiku.storage.base import prefix_of
from lumiku.storage.images import sniff, store_with_thumbnail, validate_upload

if TYPE_CHECKING:
    from lumiku.db.store import Row
    from lumiku.deps import Deps
    from lumiku.jobs.kinds import JobContext
    from lumiku.storage.images import CleanImage, StoredImage

STEPS: Final = 4


def _outcome(row: Row) -> Outcome:
    return Outcome(
        {
            "avatar_id": str(row["id"]),
            "generation_id": str(row["generation_id"]),
            "image_key": row["image_key"],
            "thumbnail_key": row["thumbnail_key"],
        }
    )


async def generate_avatar(ctx: JobContext) -> Outcome:
    """Run one avatar generation (see the module docstring). Raises Permanent when the
    project was deleted meanwhile or the provider's answer is not an image."""
    deps, payload = ctx.deps, ctx.payload
    generation_id = UUID(payload["generation_id"])
    project_id = UUID(payload["project_id"])
    existing = await deps.store.fetch_one(Q.avatar_by_generation, generation_id)
    if existing is not None:
        return _outcome(existing)
    group = prefix_of(APP_ID, ctx.user_id, generation_id)
    # What an attempt that died (or lost its project) before saving left behind.
    await deps.storage.delete_prefix(group)
    if await deps.store.fetch_one(Q.project_by_id, project_id, ctx.user_id) is None:
        raise Permanent("The project was deleted before the avatar was made.")

    await ctx.progress(0, STEPS, "rendering")

    async def report(stage: str) -> None:
        await ctx.progress(1, STEPS, f"rendering: {stage}")

    request = AvatarRequest(
        payload["provider_prompt"],
        AvatarAttributes.from_mapping(payload["attributes"]),
        width=payload["width"],
        height=payload["height"],
        seed=payload["seed"],
    )
    image = await _clean(deps, await deps.providers.avatar(request, report))
    await ctx.progress(2, STEPS, "storing")
    stored = await store_with_thumbnail(
        deps.storage, image, app=APP_ID, user_id=ctx.user_id, group=generation_id
    )
    await ctx.progress(3, STEPS, "saving")
    row = await _save(deps, ctx.user_id, project_id, generation_id, payload, stored)
    if row is None:  # a concurrent attempt saved first: keep its files, drop ours
        with trio.move_on_after(CLEANUP_BUDGET_S, shield=True):
            await deps.storage.delete(stored.key)
            await deps.storage.delete(stored.thumbnail_key)
        row = await deps.store.fetch_one(Q.avatar_by_generation, generation_id)
        assert row is not None
    ctx.deliver(int(payload.get("cost", 0)))
    await ctx.progress(STEPS, STEPS, "done")
    return _outcome(row)


async def _clean(deps: Deps, data: bytes) -> CleanImage:
    """The provider's image checked and re-encoded like an upload (no metadata kept)."""
    kind = sniff(data)
    if kind is None:
        raise Permanent("The avatar provider answered with something that is not an image.")
    try:
        return await validate_upload(data, f"avatar.{kind.ext}", max_bytes=max(len(data), 1))
    except ClientError as exc:
        raise Permanent(f"The avatar provider's image is unusable: {exc}") from exc


async def _save(
    deps: Deps,
    user_id: UUID,
    project_id: UUID,
    generation_id: UUID,
    payload: Any,
    stored: StoredImage,
) -> Row | None:
    return await deps.store.fetch_one(
        Q.insert_avatar,
        new_job_id(),
        user_id,
        project_id,
        payload["name"],
        payload["source_type"],
        stored.key,
        stored.thumbnail_key,
        stored.width,
        stored.height,
        payload["persona"],
        payload["attributes"],
        payload["prompt"],
        payload["preset_id"],
        payload["seed"],
        generation_id,
        datetime.now(UTC),
    )
