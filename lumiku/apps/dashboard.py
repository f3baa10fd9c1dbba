"""`GET /api/stats/dashboard` (SPEC §17): the user's credits, this month's spend and
generations, projects, storage and the login before this session's.

Counts come from each app's works adapter (no app's tables are read here), money from the
ledger. The month is the calendar month in UTC. `used_bytes` is what the storage holds under the
user's prefix of each app (`<app>/<user_id>/`: outputs and uploads), measured by walking
it; there is no quota yet, so `quota_bytes` is null.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lumiku.accounts.service import previous_login
from lumiku.credits import ledger
from lumiku.storage.base import prefix_of

if TYPE_CHECKING:
    from collections.abc import Iterable
    from uuid import UUID

    from lumiku.apps.registry import App
    from lumiku.deps import Deps


def month_start(now: datetime) -> datetime:
    """Midnight UTC of the first day of `now`'s month."""
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


async def dashboard(
    deps: Deps, user_id: UUID, apps: Iterable[App], *, now: datetime | None = None
) -> dict[str, Any]:
    """The dashboard of `user_id` over `apps` (those enabled for them)."""
    since = month_start(now or datetime.now(UTC))
    generations = projects = used_bytes = 0
    for app in apps:
        used_bytes += await deps.storage.usage_bytes(prefix_of(app.id, user_id))
        if app.works is not None:
            summary = await app.works.summary(deps, user_id, since=since)
            generations += summary.generations_since
            projects += summary.projects
    last_login = await previous_login(deps, user_id)
    return {
        "credits_balance": await ledger.balance(deps.store, user_id),
        "credits_spent_this_month": await ledger.spent_since(deps.store, user_id, since),
        "generations_this_month": generations,
        "projects": projects,
        "storage": {"used_bytes": used_bytes, "quota_bytes": None},
        "last_login_at": None if last_login is None else last_login.astimezone(UTC).isoformat(),
    }
