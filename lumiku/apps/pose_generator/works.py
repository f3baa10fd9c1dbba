"""Pose Generator's works adapter (SPEC §17): a generation's outputs are its poses' images
(the export formats and the ZIP are derived from them); its thumbnail is the first pose.

Deleting a generation deletes its poses (the rows cascade) and every file of the
generation's storage group: images, skeletons, figures, exports. It waits (409) for the
generation's job and for any new background of one of its poses (a `pose.background` job
writes into the same group and would charge for a pose that is gone).
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Final

from lumiku.apps.pose_generator.service import APP_ID, Q
from lumiku.apps.works import Output, Work, WorkSummary
from lumiku.errors import GenerationRunning
from lumiku.storage.base import prefix_of

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from uuid import UUID

    from lumiku.db.store import Row
    from lumiku.deps import Deps

ACTIVE: Final = ("queued", "running")


def _title(row: Row) -> str:
    poses = int(row["total_poses"])
    prompt = row["request"].get("text_prompt")
    what = f"{poses} pose" + ("" if poses == 1 else "s")
    return f"{what}: {prompt}" if row["generation_type"] == "text" and prompt else what


def _work(row: Row, images: Sequence[str]) -> Work:
    return Work(
        id=row["id"],
        job_id=row["job_id"],
        title=_title(row),
        status=row["status"],
        progress=row["progress"] or {},
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        thumbnail_key=images[0] if images else None,
        outputs=tuple(Output("pose", key) for key in images),
        credit_charged=int(row["credit_charged"]),
    )


class PoseWorks:
    """The `Works` of Pose Generator."""

    async def page(
        self, deps: Deps, user_id: UUID, *, before: UUID, limit: int, status: str | None
    ) -> Sequence[Work]:
        rows = await deps.store.fetch_all(Q.works_page, user_id, before, status or "", limit)
        if not rows:
            return []
        images: dict[str, list[str]] = defaultdict(list)
        ids = [str(row["id"]) for row in rows]
        for pose in await deps.store.fetch_all(Q.works_poses, ids):
            images[str(pose["generation_id"])].append(pose["image_key"])
        return [_work(row, images[str(row["id"])]) for row in rows]

    async def delete(self, deps: Deps, user_id: UUID, work_id: UUID) -> bool:
        async with deps.store.transaction() as tx:
            row = await tx.fetch_one(Q.lock_work, work_id, user_id)
            if row is None:
                return False
            if row["status"] in ACTIVE:
                raise GenerationRunning("Wait for the generation to finish (or cancel it).")
            if await tx.fetch_val(Q.active_background_changes, work_id, user_id):
                raise GenerationRunning("A new background for one of its poses is on its way.")
            await tx.execute(Q.delete_generation, work_id, user_id)
        await deps.storage.delete_prefix(prefix_of(APP_ID, user_id, work_id))
        return True

    async def summary(self, deps: Deps, user_id: UUID, *, since: datetime) -> WorkSummary:
        made = await deps.store.fetch_val(Q.generations_since, user_id, since)
        projects = await deps.store.fetch_val(Q.project_count, user_id)
        return WorkSummary(int(made or 0), int(projects or 0))
