"""The Pose Generator's job handlers (SPEC §8.2): `pose.generate` and `pose.background`.

`pose.generate` renders each variation key of its payload that has no `generated_poses` row
yet, so a job that runs again (a retry after a Transient error, a stalled lease) continues
where it stopped and never pays a provider twice for a finished pose. Per variation: the
figure (the project's avatar or image lends it its look), the background when asked, every
requested export format, files under the generation's group, one row, one progress event.

Errors: a variation whose provider call raises `Permanent` is recorded `failed` with its
error and its cost is refunded at the end (`Outcome.undelivered_cost`); `Transient` and
`RateLimitedUpstream` propagate, so the worker retries the job and the next run resumes.
When every variation failed the job fails (`Permanent`, a full refund by the worker).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Final, Protocol

from lumiku.apps.pose_generator import library, requests, service
from lumiku.apps.pose_generator.service import APP_ID, Q
from lumiku.errors import Permanent, ValidationFailed
from lumiku.jobs.kinds import Outcome
from lumiku.jobs.models import new_job_id
from lumiku.providers.base import (
    BackgroundRequest,
    PoseRequest,
    PoseResult,
    Report,
    derive_seed,
    no_report,
)
from lumiku.storage.base import new_key

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from lumiku.deps import Deps
    from lumiku.jobs.kinds import JobContext

PNG: Final = "image/png"


class Renderers(Protocol):
    """The two provider operations the app calls (`deps.providers` in production; tests
    hand `make_app` a wrapper that counts calls or fails chosen ones)."""

    async def pose(self, request: PoseRequest, report: Report = no_report) -> PoseResult: ...

    async def background(self, request: BackgroundRequest, report: Report = no_report) -> bytes: ...


def default_renderers(deps: Deps) -> Renderers:
    return deps.providers


def library_pose(generation_type: str, key: str, prompt: str | None) -> library.Pose:
    """The library pose a variation is drawn in: the selected one (gallery), or one chosen
    from the prompt and the variation (text), the same on every run."""
    base = key.rsplit("-v", 1)[0]
    if generation_type == "gallery":
        return library.get(base)
    poses = sorted(library.bundled().poses)
    return library.get(poses[derive_seed("text-pose", prompt, key) % len(poses)])


async def _put_png(deps: Deps, user_id: uuid.UUID, group: uuid.UUID, data: bytes) -> str:
    key = new_key(APP_ID, user_id, "png", group=group)
    await deps.storage.put(key, data, PNG)
    return key.value


async def background_bytes(
    deps: Deps, user_id: uuid.UUID, background: Mapping[str, Any]
) -> bytes | None:
    """The uploaded background image of an `upload` background; Permanent when the upload
    is gone (the request was checked, so it was deleted since)."""
    if background["mode"] != "upload":
        return None
    try:
        key = await service.upload_key(deps.storage, user_id, uuid.UUID(background["file_id"]))
    except ValidationFailed:
        raise Permanent("the background upload no longer exists") from None
    return await deps.storage.get(key)


async def apply_background(
    renderers: Renderers,
    figure: bytes,
    background: Mapping[str, Any],
    upload: bytes | None,
    seed: int,
) -> bytes:
    request = BackgroundRequest(
        subject=figure,
        mode=background["mode"],
        color=background.get("color"),
        upload=upload,
        prompt=background.get("prompt") or "",
        seed=seed,
    )
    return await renderers.background(request)


class _Generation:
    """One run of a `pose.generate` job."""

    def __init__(self, ctx: JobContext, renderers: Renderers, row: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.deps = ctx.deps
        self.renderers = renderers
        self.id: uuid.UUID = row["id"]
        self.payload = ctx.payload
        self.background: Mapping[str, Any] | None = self.payload["background"]
        self.per_pose = requests.cost(1, with_background=self.background is not None)

    async def render(self, key: str, subject: bytes | None, upload: bytes | None) -> None:
        """Render, store and record variation `key`; a Permanent provider error records it
        failed instead."""
        payload = self.payload
        pose = library_pose(payload["generation_type"], key, payload["text_prompt"])
        seed = derive_seed(APP_ID, str(self.id), key)
        user_id = self.ctx.user_id
        try:
            result = await self.renderers.pose(
                PoseRequest(
                    pose.keypoints,
                    prompt=payload["text_prompt"] or pose.name,
                    subject=subject,
                    seed=seed,
                )
            )
            image = result.figure
            if self.background is not None:
                image = await apply_background(
                    self.renderers, result.figure, self.background, upload, seed
                )
        except Permanent as error:
            error_body = {"code": "PERMANENT", "message": str(error)}
            await self._record(key, pose.id, "failed", error=error_body)
            return
        figure_key = await _put_png(self.deps, user_id, self.id, result.figure)
        skeleton_key = await _put_png(self.deps, user_id, self.id, result.skeleton)
        image_key = figure_key
        if self.background is not None:
            image_key = await _put_png(self.deps, user_id, self.id, image)
        exports = await service.write_exports(
            self.deps, user_id, self.id, image, list(payload["output_formats"])
        )
        await self._record(
            key,
            pose.id,
            "succeeded",
            image_key=image_key,
            skeleton_key=skeleton_key,
            figure_key=figure_key,
            exports=exports,
        )
        self.ctx.deliver(self.per_pose)

    async def _record(self, key: str, pose_id: str, status: str, **columns: Any) -> None:
        await self.deps.store.execute(
            Q.insert_pose,
            new_job_id(),
            self.id,
            self.ctx.user_id,
            key,
            pose_id,
            status,
            columns.get("image_key"),
            columns.get("skeleton_key"),
            columns.get("figure_key"),
            columns.get("exports", {}),
            columns.get("error"),
            self.per_pose,
            service.now(),
        )


async def subject_of(deps: Deps, project: Mapping[str, Any] | None) -> bytes | None:
    if project is None:
        raise Permanent("the generation's project no longer exists")
    key = project["avatar_image_key"] or project["image_key"]
    return None if key is None else await deps.storage.get(key)


async def generate(ctx: JobContext, renderers: Renderers) -> Outcome:
    """Run a `pose.generate` job (see the module docstring)."""
    store = ctx.deps.store
    row = await store.fetch_one(Q.generation_by_job, uuid.UUID(ctx.job_id))
    if row is None:
        raise Permanent("the job has no generation")
    run = _Generation(ctx, renderers, row)
    project = await service.find_project(store, ctx.user_id, row["project_id"])
    subject = await subject_of(ctx.deps, project)
    upload = None
    if run.background is not None:
        upload = await background_bytes(ctx.deps, ctx.user_id, run.background)
    keys: list[str] = list(ctx.payload["variation_keys"])
    finished = await store.fetch_all(Q.generation_poses, run.id)
    done = {r["variation_key"] for r in finished}
    for r in finished:
        if r["status"] == "succeeded":
            ctx.deliver(int(r["cost"]))  # delivered by an earlier run: a cancel keeps it
    completed = len(done)
    for key in keys:
        if key in done:
            continue
        await run.render(key, subject, upload)
        completed += 1
        await ctx.progress(completed, len(keys), f"pose {key}")
    rows = await store.fetch_all(Q.generation_poses, run.id)
    failed = [r for r in rows if r["status"] == "failed"]
    succeeded = len(rows) - len(failed)
    if not succeeded:
        raise Permanent(f"every pose failed ({len(failed)} of {len(keys)})")
    return Outcome(
        {
            "generation_id": str(run.id),
            "total": len(keys),
            "succeeded": succeeded,
            "failed": len(failed),
        },
        undelivered_cost=sum(int(r["cost"]) for r in failed),
    )


async def change_background(ctx: JobContext, renderers: Renderers) -> Outcome:
    """Run a `pose.background` job: the pose's figure over the new background, every export
    it had written again; the replaced files are deleted once the row points at the new
    ones. A Permanent provider error fails the job (a full refund)."""
    deps = ctx.deps
    pose_id = uuid.UUID(ctx.payload["pose_id"])
    row = await deps.store.fetch_one(Q.pose_by_id, pose_id, ctx.user_id)
    if row is None or row["figure_key"] is None:
        raise Permanent("the pose no longer exists")
    background = ctx.payload["background"]
    figure = await deps.storage.get(row["figure_key"])
    upload = await background_bytes(deps, ctx.user_id, background)
    seed = derive_seed(APP_ID, ctx.job_id)
    image = await apply_background(renderers, figure, background, upload, seed)
    group = row["generation_id"]
    image_key = await _put_png(deps, ctx.user_id, group, image)
    exports = await service.write_exports(deps, ctx.user_id, group, image, sorted(row["exports"]))
    await deps.store.execute(
        Q.update_pose_image, pose_id, ctx.user_id, image_key, exports, service.now()
    )
    replaced = [*row["exports"].values()]
    if row["image_key"] != row["figure_key"]:
        replaced.append(row["image_key"])
    for key in replaced:
        await deps.storage.delete(key)
    ctx.deliver(requests.COST_BACKGROUND_CHANGE)
    return Outcome({"pose_id": str(pose_id), "formats": sorted(exports)})


def bind(
    handler: Callable[[JobContext, Renderers], Any], renderers_of: Callable[[Deps], Renderers]
) -> Callable[[JobContext], Any]:
    async def run(ctx: JobContext) -> Outcome:
        result: Outcome = await handler(ctx, renderers_of(ctx.deps))
        return result

    return run
