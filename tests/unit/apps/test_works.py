"""My Work's merge of per-app pages (`lumiku/apps/works.py`): newest first across apps,
the cursor continuing exactly where a page stopped, and the arguments checked."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast
from uuid import UUID

import attrs
import pytest

from lumiku.apps.registry import App
from lumiku.apps.works import Work, WorkSummary, list_works
from lumiku.deps import Deps
from lumiku.errors import ValidationFailed
from lumiku.jobs.models import new_job_id

USER = UUID(int=1)
NO_DEPS = cast("Deps", None)  # works without outputs never sign nor stat


@attrs.define
class ListedWorks:
    """A works adapter over a fixed list of generations."""

    works: list[Work]
    pages: list[tuple[UUID, int, str | None]] = attrs.field(factory=list)

    async def page(
        self, deps: Deps, user_id: UUID, *, before: UUID, limit: int, status: str | None
    ) -> Sequence[Work]:
        self.pages.append((before, limit, status))
        newest = sorted(self.works, key=lambda w: w.id, reverse=True)
        return [w for w in newest if w.id < before and status in (None, w.status)][:limit]

    async def delete(self, deps: Deps, user_id: UUID, work_id: UUID) -> bool:
        raise NotImplementedError

    async def summary(self, deps: Deps, user_id: UUID, *, since: datetime) -> WorkSummary:
        raise NotImplementedError


def work(ms: int, status: str = "succeeded") -> Work:
    return Work(
        id=new_job_id(ms),
        job_id=new_job_id(ms),
        title=f"made at {ms}",
        status=status,
        progress={},
        created_at=datetime.fromtimestamp(ms / 1000, UTC),
        finished_at=None,
        thumbnail_key=None,
        outputs=(),
        credit_charged=1,
    )


def apps() -> list[App]:
    return [
        App("first", "First", works=ListedWorks([work(1), work(4), work(7, "failed")])),
        App("second", "Second", works=ListedWorks([work(2), work(5)])),
        App("third", "Third", works=ListedWorks([work(3), work(6)])),
        App("quiet", "Makes nothing"),
    ]


async def pages(limit: int, **filters: Any) -> list[list[str]]:
    registered, out, cursor = apps(), [], None
    while True:
        page = await list_works(NO_DEPS, USER, registered, limit=limit, cursor=cursor, **filters)
        out.append([g["title"].removeprefix("made at ") for g in page.as_dict()["generations"]])
        cursor = page.next_cursor
        if cursor is None:
            return out


async def test_pages_merge_every_app_newest_first() -> None:
    assert await pages(3) == [["7", "6", "5"], ["4", "3", "2"], ["1"]]
    assert await pages(7) == [["7", "6", "5", "4", "3", "2", "1"]]
    assert await pages(2, status="succeeded") == [["6", "5"], ["4", "3"], ["2", "1"]]
    assert await pages(10, app_id="second") == [["5", "2"]]


async def test_each_adapter_is_asked_one_more_than_the_page() -> None:
    registered = apps()
    await list_works(NO_DEPS, USER, registered, limit=2, status="failed")
    first = registered[0].works
    assert isinstance(first, ListedWorks)
    assert first.pages == [(UUID(int=2**128 - 1), 3, "failed")]


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"status": "done"}, "status"),
        ({"cursor": "%%%"}, "cursor"),
        ({"app_id": "quiet"}, "app"),
        ({"app_id": "unknown"}, "app"),
    ],
)
async def test_bad_arguments_name_their_field(filters: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationFailed) as raised:
        await list_works(NO_DEPS, USER, apps(), **filters)
    assert [e.field for e in raised.value.errors] == [field]
