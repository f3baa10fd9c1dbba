"""`/api/jobs/*` and the admin job routes (SPEC §6)."""

from __future__ import annotations

import uuid
from typing import Any

from quart import Blueprint, request

from lumiku.errors import NotFound
from lumiku.http.auth import admin_only, authenticated, current_user, is_admin
from lumiku.http.bodies import query_int
from lumiku.http.context import current_deps
from lumiku.jobs import service

blueprint = Blueprint("jobs", __name__)


def _job_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise NotFound("No such job") from None


@blueprint.get("/api/jobs")
@authenticated
async def list_jobs() -> dict[str, Any]:
    page = await service.user_jobs(
        current_deps(),
        current_user().id,
        status=request.args.get("status"),
        kind=request.args.get("kind"),
        limit=query_int("limit", 20, 1, 100),
        cursor=request.args.get("cursor"),
    )
    return page.as_dict()


@blueprint.get("/api/jobs/<job_id>")
@authenticated
async def get_job(job_id: str) -> dict[str, Any]:
    user = current_user()
    job = await service.user_job(
        current_deps(), _job_id(job_id), user_id=user.id, is_admin=is_admin(user)
    )
    return {"job": job.as_dict()}


@blueprint.post("/api/jobs/<job_id>/cancel")
@authenticated
async def cancel(job_id: str) -> tuple[dict[str, Any], int]:
    """200 with the cancelled job (a queued job, refunded at once); 202 while a running job
    is being stopped; 409 JOB_FINISHED for a finished one; 404 for anyone else's."""
    user = current_user()
    outcome = await service.cancel_job(
        current_deps(), _job_id(job_id), user_id=user.id, is_admin=is_admin(user)
    )
    if outcome.immediate:
        return {"job": outcome.job.as_dict()}, 200
    return {"job": outcome.job.as_dict(), "cancel_requested": True}, 202


@blueprint.get("/api/admin/jobs")
@admin_only
async def admin_jobs() -> dict[str, Any]:
    page = await service.every_job(
        current_deps(),
        status=request.args.get("status"),
        limit=query_int("limit", 20, 1, 100),
        cursor=request.args.get("cursor"),
    )
    return page.as_dict()


@blueprint.post("/api/admin/jobs/<job_id>/retry")
@admin_only
async def admin_retry(job_id: str) -> tuple[dict[str, Any], int]:
    """Queue a failed job again, charging its user again (402 when they cannot pay)."""
    job = await service.retry_job(current_deps(), _job_id(job_id))
    return {"job": job.as_dict()}, 202
