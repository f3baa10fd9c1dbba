"""The cross-app routes (SPEC §17) and the feature-flag gate of every app route (SPEC §12:
a disabled app answers 404 `APP_DISABLED`).

`GET /api/apps` lists the apps the current user may use, ordered by `order`; My Work
(`/api/generations`, `/recent`, `DELETE /api/generations/{id}`, `apps/works.py`) and
`GET /api/stats/dashboard` (`apps/dashboard.py`) cover those same apps."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from quart import Blueprint, request

from lumiku.apps import works
from lumiku.apps.dashboard import dashboard
from lumiku.errors import AppDisabled
from lumiku.http.auth import authenticated, current_user, optional_user
from lumiku.http.bodies import query_int
from lumiku.http.context import current_deps

if TYPE_CHECKING:
    from uuid import UUID

    from lumiku.accounts.service import User
    from lumiku.apps.registry import App
    from lumiku.deps import Deps

blueprint = Blueprint("apps", __name__)

APPS_PREFIX: Final = "/api/apps/"


def app_enabled(deps: Deps, app: App, user: User | None) -> bool:
    """Whether `user` may use `app`: its flag (`App.flag`, else its id) decides."""
    return deps.flags is None or deps.flags.enabled(app.flag or app.id, user)


def enabled_apps(deps: Deps, user: User) -> list[App]:
    """The apps `user` may use, by `order` (then id)."""
    apps = [app for app in deps.apps.apps() if app_enabled(deps, app, user)]
    return sorted(apps, key=lambda app: (app.order, app.id))


@blueprint.get("/api/apps")
@authenticated
async def list_apps() -> dict[str, Any]:
    deps, user = current_deps(), current_user()
    return {"apps": [app.as_dict() for app in enabled_apps(deps, user)]}


@blueprint.get("/api/generations")
@authenticated
async def list_generations() -> dict[str, Any]:
    deps, user = current_deps(), current_user()
    page = await works.list_works(
        deps,
        user.id,
        enabled_apps(deps, user),
        app_id=request.args.get("app") or None,
        status=request.args.get("status") or None,
        limit=query_int("limit", 20, 1, works.MAX_PAGE),
        cursor=request.args.get("cursor") or None,
    )
    return page.as_dict()


@blueprint.get("/api/generations/recent")
@authenticated
async def recent_generations() -> dict[str, Any]:
    deps, user = current_deps(), current_user()
    page = await works.list_works(deps, user.id, enabled_apps(deps, user), limit=works.RECENT)
    return {"generations": page.as_dict()["generations"]}


# `<uuid:...>`: so `/api/generations/recent` is not also an id (OPTIONS there would
# advertise DELETE); any other id is 404 all the same.
@blueprint.delete("/api/generations/<uuid:generation_id>")
@authenticated
async def delete_generation(generation_id: UUID) -> tuple[str, int]:
    """204 once deleted; 409 GENERATION_RUNNING while queued or running; 404 otherwise."""
    deps, user = current_deps(), current_user()
    await works.delete_work(deps, user.id, enabled_apps(deps, user), generation_id)
    return "", 204


@blueprint.get("/api/stats/dashboard")
@authenticated
async def stats_dashboard() -> dict[str, Any]:
    deps, user = current_deps(), current_user()
    return await dashboard(deps, user.id, enabled_apps(deps, user))


async def gate_disabled_apps() -> None:
    """before_request of the whole app: 404 APP_DISABLED for a disabled app's routes. The
    caller's token is read only when the flag is a percentage rollout (on: nothing to do;
    off: nobody gets it)."""
    path = request.path
    if not path.startswith(APPS_PREFIX):
        return
    deps = current_deps()
    if deps.flags is None:
        return
    app_id = path[len(APPS_PREFIX) :].split("/", 1)[0]
    try:
        app = deps.apps.app(app_id)
    except KeyError:
        return
    if deps.flags.fully_on(app.flag or app.id):
        return
    if not app_enabled(deps, app, await optional_user()):
        raise AppDisabled(f"The app {app.id!r} is not available.")
