"""`GET /api/jobs/{id}/events`: one job's events as Server-Sent Events (SPEC §7).

The token comes as `Authorization: Bearer` or `?token=` (browsers' EventSource cannot set
headers). The stream starts with a `generation:snapshot` (no `id:`, so it never moves the
client's Last-Event-ID), replays the events after `Last-Event-ID` (header, or
`?last_event_id=`), then sends live ones with `id:` = seq, and ends after the job's ONE
terminal event — live, replayed, or built from the job row when neither has it (after a
restart, after a Redis outage; `jobs.announce.catch_up`) — or when the service shuts down.
A finished job whose terminal event the client already has (`Last-Event-ID` at or past it)
gets its snapshot only. Idle streams get a comment every 15 s so proxies keep them, and the
job row is read again then, so a terminal event that missed this instance still ends them.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Final

import trio
from quart import Blueprint, Response, request

from lumiku import events
from lumiku.accounts.tokens import bearer
from lumiku.errors import DatabaseError, FieldError, NotFound, ValidationFailed
from lumiku.http.auth import is_admin, resolve
from lumiku.http.context import current_deps
from lumiku.jobs import announce
from lumiku.jobs.queue import get_job
from lumiku.observability.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from lumiku.deps import Deps
    from lumiku.jobs.models import Job

log = get_logger(__name__)

blueprint = Blueprint("sse", __name__)

KEEPALIVE_S: Final = 15.0


def _frame(event: events.Event, *, with_id: bool = True) -> bytes:
    head = f"id: {event.seq}\n" if with_id else ""
    return f"{head}event: {event.type}\ndata: {json.dumps(event.to_json())}\n\n".encode()


def _last_event_id() -> int:
    raw = request.headers.get("Last-Event-ID") or request.args.get("last_event_id") or "0"
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 18):  # "²", 10**5000: no int()
        raise ValidationFailed([FieldError("Last-Event-ID", "must be a non-negative integer")])
    return int(raw)


@blueprint.get("/api/jobs/<job_id>/events")
async def job_events(job_id: str) -> Response:
    user = await resolve(bearer(request.headers.get("Authorization")) or request.args.get("token"))
    try:
        parsed = uuid.UUID(job_id)
    except ValueError:
        raise NotFound("No such job") from None
    deps = current_deps()
    job = await get_job(deps.store, parsed, user_id=user.id, is_admin=is_admin(user))
    after = _last_event_id()
    return Response(
        _stream(deps, job, after),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _stream(deps: Deps, job: Job, after: int) -> AsyncIterator[bytes]:
    key = str(job.id)
    async with deps.events.subscribe_user(str(job.user_id), job_id=key) as subscription:
        subscription.resume_from(key, after)
        job = await _reread(deps, job)  # after subscribing: what it misses arrives live
        yield _frame(announce.snapshot(job), with_id=False)
        for event in await announce.catch_up(deps.events, subscription, job):
            yield _frame(event)
            if event.is_terminal:
                return
        if job.finished:
            return  # its terminal event was sent, or the client had it already
        idle_s = 0.0
        while not deps.shutdown.closing.is_set():
            with trio.move_on_after(1.0) as waited:
                try:
                    event = await subscription.receive()
                except events.Overflowed:
                    # Fell behind (its buffer filled): end the stream cleanly; EventSource
                    # reconnects with Last-Event-ID and the replay fills the gap.
                    log.info("sse.overflowed", job_id=key)
                    return
            if waited.cancelled_caught:
                idle_s += 1.0
                if idle_s >= KEEPALIVE_S:
                    idle_s = 0.0
                    # A terminal event can miss this instance (published elsewhere while
                    # the fan-out was down, or lost with a crashed publisher): the row
                    # tells, and catch_up sends what the replay or the row has.
                    job = await _reread(deps, job)
                    for missed in await announce.catch_up(deps.events, subscription, job):
                        yield _frame(missed)
                        if missed.is_terminal:
                            return
                    if job.finished:
                        return  # the client had its terminal event already
                    yield b": keep-alive\n\n"
                continue
            idle_s = 0.0
            yield _frame(event)
            if event.is_terminal:
                return


async def _reread(deps: Deps, job: Job) -> Job:
    """The job row read again; `job` itself when the database does not answer (the
    stream goes on, and the next look tries again)."""
    try:
        return await get_job(deps.store, job.id, user_id=job.user_id, is_admin=True)
    except DatabaseError as exc:
        log.warning("sse.job_unreadable", job_id=str(job.id), error=str(exc))
        return job
    except NotFound:  # deleted meanwhile: nothing more will come
        return job
