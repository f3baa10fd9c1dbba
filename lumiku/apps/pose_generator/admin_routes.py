"""Pose requests (users ask for poses; admins decide) and the app's health (SPEC §8.2), on
the Pose Generator's blueprint."""

from __future__ import annotations

from typing import Any

from quart import request

from lumiku.apps.pose_generator import pose_requests, service
from lumiku.apps.pose_generator.routes import blueprint
from lumiku.apps.pose_generator.service import parse_id
from lumiku.http.auth import admin_only, authenticated, current_user
from lumiku.http.bodies import query_int, read_json
from lumiku.http.context import current_deps
from lumiku.http.ratelimit import rate_limited

__all__ = ["blueprint"]


@blueprint.post("/requests")
@authenticated
async def create_request() -> tuple[dict[str, Any], int]:
    body = pose_requests.validate_pose_request(await read_json())
    row = await service.create_request(current_deps().store, current_user().id, body)
    return {"request": service.request_dict(row)}, 201


@blueprint.get("/requests")
@authenticated
async def list_requests() -> dict[str, Any]:
    rows, cursor = await service.list_requests(
        current_deps().store,
        current_user().id,
        status="",
        limit=query_int("limit", 20, 1, 100),
        cursor=request.args.get("cursor"),
    )
    return {"requests": [service.request_dict(r) for r in rows], "next_cursor": cursor}


@blueprint.get("/admin/requests")
@admin_only
async def admin_list_requests() -> dict[str, Any]:
    rows, cursor = await service.list_requests(
        current_deps().store,
        None,
        status=request.args.get("status", ""),
        limit=query_int("limit", 20, 1, 100),
        cursor=request.args.get("cursor"),
    )
    return {"requests": [service.request_dict(r) for r in rows], "next_cursor": cursor}


@blueprint.post("/admin/requests/<request_id>/<action>")
@admin_only
async def admin_decide(request_id: str, action: str) -> dict[str, Any]:
    """approve | reject (notes required) | start | complete; 409 when the request's status
    does not allow the action."""
    target = parse_id(request_id, "pose request")
    raw = await request.get_data(cache=True)
    decision = pose_requests.validate_admin_action(action, await read_json() if raw else {})
    row = await service.decide_request(current_deps().store, target, decision)
    return {"request": service.request_dict(row)}


@blueprint.get("/health")
@rate_limited("health")
async def health() -> tuple[dict[str, Any], int]:
    """Queue counts of the app's job kinds and the state of its providers; 503 `degraded`
    while the pose provider's breaker is not closed (its jobs wait in the queue)."""
    deps = current_deps()
    providers = deps.providers.health(operations=("pose", "background"))
    pose_ok = deps.providers.available("pose")
    status = "ok" if pose_ok and providers["status"] == "ok" else "degraded"
    body = {
        "status": status,
        "queue": await service.queue_counts(deps.store),
        "providers": providers,
    }
    return body, 200 if pose_ok else 503
