"""`GET /api/apps`: the apps the current user may use (SPEC §8), and the feature-flag gate
of every app route (SPEC §12): a disabled app answers 404 `APP_DISABLED`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from quart import Blueprint, request

from lumiku.errors import AppDisabled
from lumiku.http.auth import authenticated, current_user, optional_user
from lumiku.http.context import current_deps

if TYPE_CHECKING:
    from lumiku.accounts.service import User
    from lumiku.apps.registry import App
    from lumiku.deps import Deps

blueprint = Blueprint("apps", __name__)

APPS_PREFIX: Final = "/api/apps/"


def app_enabled(deps: Deps, app: App, user: User | None) -> bool:
    """Whether `user` may use `app`: its flag (`App.flag`, else its id) decides."""
    return deps.flags is None or deps.flags.enabled(app.flag or app.id, user)


@blueprint.get("/api/apps")
@authenticated
async def list_apps() -> dict[str, Any]:
    deps, user = current_deps(), current_user()
    return {"apps": [app.as_dict() for app in deps.apps.apps() if app_enabled(deps, app, user)]}


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
