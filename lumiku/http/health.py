"""Health routes (SPEC §13.2); the checks themselves live in observability/health.py.

`/health` and `/health/liveness` touch nothing, so the edge middleware answers them
itself (`probes`); readiness and the detailed report are quart routes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

from quart import Blueprint

from lumiku.http.context import current_deps

if TYPE_CHECKING:
    from lumiku.deps import Deps
    from lumiku.http.middleware import Probe

blueprint = Blueprint("health", __name__)

ALIVE: Final = b'{"status":"alive"}'


def probes(deps: Deps) -> dict[str, Probe]:
    """The endpoints the edge answers without quart."""
    health = deps.health
    return {
        "/health": lambda: json.dumps(health.summary()).encode(),
        "/health/liveness": lambda: ALIVE,
    }


def _deps() -> Any:
    return current_deps()


@blueprint.get("/health/readiness")
async def readiness() -> tuple[dict[str, Any], int]:
    status, body = await _deps().health.readiness()
    return body, status


@blueprint.get("/health/detailed")
async def detailed() -> tuple[dict[str, Any], int]:
    status, body = await _deps().health.detailed()
    return body, status
