"""My Work (SPEC §17): every app's generations of a user, through each app's works adapter.

An app declares a `Works` adapter on its `App`; this module is the only reader of them, and
no app reads another's tables. The adapter owns its rows; this module owns what is common:
merging, paging, signing URLs and sizing outputs.

Listing merges per-app pages. Generation ids are UUIDv7 made at submission, so they sort by
creation time across apps: each adapter returns at most `limit + 1` of its generations with
ids below the cursor, newest first (one index range scan on its `(user_id, id)` index), and
the merge keeps the newest `limit`. The cursor is the last id returned, so a page costs one
query per app and never skips or repeats a generation. (A generations view over `jobs` was
the alternative: one query, but jobs outlive a deleted generation — they are the ledger's
record — and not every job is a generation, so the view would need a per-app filter anyway.)

Deleting asks each adapter in turn; the one that owns the id deletes its rows and files, or
raises `GenerationRunning` while the job is queued or running. Output sizes come from the
storage (`stat`), as no size is recorded at write time yet.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from datetime import UTC
from typing import TYPE_CHECKING, Any, Final, Protocol
from uuid import UUID

import attrs
import trio

from lumiku.errors import FieldError, NotFound, StorageError, ValidationFailed
from lumiku.jobs.models import STATUSES, decode_cursor, encode_cursor
from lumiku.storage.signing import signed_url

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime

    from lumiku.apps.registry import App
    from lumiku.deps import Deps

MAX_PAGE: Final = 100
RECENT: Final = 5
STAT_CONCURRENCY: Final = 8
_NO_CURSOR: Final = UUID(int=2**128 - 1)  # above every id: the first page


@attrs.frozen
class Output:
    """One stored file a generation produced: `kind` says what it is (`image`, `pose`)."""

    kind: str
    key: str


@attrs.frozen
class Work:
    """One generation as My Work shows it; the status, progress and times are its job's."""

    id: UUID
    job_id: UUID
    title: str
    status: str
    progress: Mapping[str, Any]
    created_at: datetime
    finished_at: datetime | None
    thumbnail_key: str | None
    outputs: tuple[Output, ...]
    credit_charged: int


@attrs.frozen
class WorkSummary:
    """An app's counts for the dashboard."""

    generations_since: int  # generations created since the `since` asked for
    projects: int


class Works(Protocol):
    """How My Work lists, describes and deletes the user's outputs of one app."""

    async def page(
        self, deps: Deps, user_id: UUID, *, before: UUID, limit: int, status: str | None
    ) -> Sequence[Work]:
        """At most `limit` of the user's generations with ids below `before`, newest first;
        `status` (a job status) filters them."""
        ...

    async def delete(self, deps: Deps, user_id: UUID, work_id: UUID) -> bool:
        """Delete the generation, its outputs and their files; False when the user has no
        generation `work_id` here. Raises GenerationRunning while its job is queued or
        running (checked under a lock, so it cannot start again meanwhile)."""
        ...

    async def summary(self, deps: Deps, user_id: UUID, *, since: datetime) -> WorkSummary: ...


@attrs.frozen
class WorksPage:
    works: tuple[dict[str, Any], ...]
    next_cursor: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"generations": list(self.works), "next_cursor": self.next_cursor}


def _check(limit: int, status: str | None, cursor: str | None) -> UUID:
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed([FieldError("limit", f"must be between 1 and {MAX_PAGE}")])
    if status is not None and status not in STATUSES:
        raise ValidationFailed([FieldError("status", f"must be one of {', '.join(STATUSES)}")])
    return _NO_CURSOR if cursor is None else decode_cursor(cursor)


async def list_works(
    deps: Deps,
    user_id: UUID,
    apps: Iterable[App],
    *,
    app_id: str | None = None,
    status: str | None = None,
    limit: int = 20,
    cursor: str | None = None,
) -> WorksPage:
    """The user's generations of `apps` (those with a works adapter; `app_id` picks one),
    newest first, with signed URLs. ValidationFailed for a bad limit, status, cursor or
    an app that is not among `apps`."""
    before = _check(limit, status, cursor)
    chosen = [app for app in apps if app.works is not None]
    if app_id is not None:
        chosen = [app for app in chosen if app.id == app_id]
        if not chosen:
            raise ValidationFailed([FieldError("app", "is not one of your apps")])
    pages: list[list[tuple[App, Work]]] = []
    for app in chosen:
        assert app.works is not None
        works = await app.works.page(deps, user_id, before=before, limit=limit + 1, status=status)
        pages.append([(app, work) for work in works])
    merged = list(
        itertools.islice(heapq.merge(*pages, key=lambda pair: pair[1].id, reverse=True), limit + 1)
    )
    shown = merged[:limit]
    more = len(merged) > limit
    views = await _views(deps, shown)
    return WorksPage(tuple(views), encode_cursor(shown[-1][1].id) if more else None)


async def delete_work(deps: Deps, user_id: UUID, apps: Iterable[App], work_id: UUID) -> None:
    """Delete generation `work_id` of the user, whichever app made it; NotFound when none
    did, GenerationRunning while it is queued or running."""
    for app in apps:
        if app.works is not None and await app.works.delete(deps, user_id, work_id):
            return
    raise NotFound("No such generation.")


async def _views(deps: Deps, works: Sequence[tuple[App, Work]]) -> list[dict[str, Any]]:
    keys = {output.key for _app, work in works for output in work.outputs}
    sizes = await _sizes(deps, keys)
    return [_view(deps, app, work, sizes) for app, work in works]


def _view(deps: Deps, app: App, work: Work, sizes: Mapping[str, int | None]) -> dict[str, Any]:
    thumbnail = work.thumbnail_key
    return {
        "id": str(work.id),
        "app": app.id,
        "title": work.title,
        "status": work.status,
        "progress": dict(work.progress),
        "created_at": _iso(work.created_at),
        "finished_at": _iso(work.finished_at),
        "thumbnail_url": None if thumbnail is None else signed_url(deps, thumbnail),
        "outputs": [
            {"kind": o.kind, "url": signed_url(deps, o.key), "bytes": sizes.get(o.key)}
            for o in work.outputs
        ],
        "credit_charged": work.credit_charged,
        "job_id": str(work.job_id),
    }


async def _sizes(deps: Deps, keys: Iterable[str]) -> dict[str, int | None]:
    """Each key's stored size (None when the file is gone or the storage cannot say), a few
    `stat`s at a time."""
    sizes: dict[str, int | None] = {}
    limiter = trio.CapacityLimiter(STAT_CONCURRENCY)

    async def size_of(key: str) -> None:
        info = None
        async with limiter:
            with contextlib.suppress(StorageError):  # a size is not worth failing the page
                info = await deps.storage.stat(key)
        sizes[key] = None if info is None else info.size

    async with trio.open_nursery() as nursery:
        for key in sorted(keys):
            nursery.start_soon(size_of, key)
    return sizes


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()
