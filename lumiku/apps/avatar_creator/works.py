"""Avatar Creator's works adapter (SPEC §17): a generation's output is the avatar it made.

Deleting a generation deletes its avatar (its usage rows cascade; a pose project that used it
loses the link, as when the avatar itself is deleted) and the files of the generation's
storage group.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lumiku.apps.avatar_creator.service import Q, delete_generation_files
from lumiku.apps.works import Output, Work, WorkSummary
from lumiku.errors import GenerationRunning

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime
    from uuid import UUID

    from lumiku.db.store import Row
    from lumiku.deps import Deps

ACTIVE = ("queued", "running")


def _work(row: Row) -> Work:
    outputs = () if row["image_key"] is None else (Output("image", row["image_key"]),)
    return Work(
        id=row["id"],
        job_id=row["job_id"],
        title=row["avatar_name"] or row["request"].get("name") or "Avatar",
        status=row["status"],
        progress=row["progress"] or {},
        created_at=row["created_at"],
        finished_at=row["finished_at"],
        thumbnail_key=row["thumbnail_key"],
        outputs=outputs,
        credit_charged=int(row["credit_charged"]),
    )


class AvatarWorks:
    """The `Works` of Avatar Creator."""

    async def page(
        self, deps: Deps, user_id: UUID, *, before: UUID, limit: int, status: str | None
    ) -> Sequence[Work]:
        rows = await deps.store.fetch_all(Q.works_page, user_id, before, status or "", limit)
        return [_work(row) for row in rows]

    async def delete(self, deps: Deps, user_id: UUID, work_id: UUID) -> bool:
        async with deps.store.transaction() as tx:
            row = await tx.fetch_one(Q.lock_work, work_id, user_id)
            if row is None:
                return False
            if row["status"] in ACTIVE:
                raise GenerationRunning("Wait for the generation to finish (or cancel it).")
            await tx.execute(Q.delete_generation_avatar, work_id, user_id)
            await tx.execute(Q.delete_generation, work_id, user_id)
        await delete_generation_files(deps, user_id, work_id)
        return True

    async def summary(self, deps: Deps, user_id: UUID, *, since: datetime) -> WorkSummary:
        made = await deps.store.fetch_val(Q.generations_since, user_id, since)
        projects = await deps.store.fetch_val(Q.project_count, user_id)
        return WorkSummary(int(made or 0), int(projects or 0))
