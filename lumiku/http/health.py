"""Health routes (SPEC §13.2); the checks themselves live in observability/health.py."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

blueprint = Blueprint("health", __name__)

_ALIVE = {"status": "alive"}


def _deps() -> Any:
    from lumiku.http.app import current_deps

    return current_deps()


@blueprint.get("/health")
async def summary() -> dict[str, Any]:
    return _deps().health.summary()  # type: ignore[no-any-return]


@blueprint.get("/health/liveness")
async def liveness() -> dict[str, Any]:
    return _ALIVE


@blueprint.get("/health/readiness")
async def readiness() -> tuple[dict[str, Any], int]:
    status, body = await _deps().health.readiness()
    return body, status


@blueprint.get("/health/detailed")
async def detailed() -> tuple[dict[str, Any], int]:
    status, body = await _deps().health.detailed()
    return body, status
