"""`GET /api/apps`: the apps the current user may use (SPEC §8)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from lumiku.http.auth import authenticated
from lumiku.http.context import current_deps

blueprint = Blueprint("apps", __name__)


@blueprint.get("/api/apps")
@authenticated
async def list_apps() -> dict[str, Any]:
    # Feature flags (SPEC §12) arrive with the operations issue; until then every
    # registered app is enabled for everyone.
    return {"apps": [app.as_dict() for app in current_deps().apps.apps()]}
