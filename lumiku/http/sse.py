"""`GET /api/jobs/{id}/events`: one job's events as Server-Sent Events (SPEC §7).

The token comes as `Authorization: Bearer` or `?token=` (browsers' EventSource cannot set
headers). The stream starts with a `generation:snapshot` (no `id:`, so it never moves the
client's Last-Event-ID), replays the events after `Last-Event-ID` (header, or
`?last_event_id=`), then sends live ones with `id:` = seq, and ends after the terminal event
— or when the service shuts down. Idle streams get a comment every 15 s so proxies keep them.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Final

import trio
from quart import Blueprint, Response, request

from lumiku import events
from lumiku.accounts.tokens import bearer
from lumiku.errors import FieldError, NotFound, ValidationFailed
from lumiku.http.auth import is_admin, resolve
from lumiku.http.context import current_deps
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
        snapshot = events.Event(
            type=events.SNAPSHOT,
            job_id=key,
            user_id=str(job.user_id),
            seq=job.event_seq,
            ts=events.utc_now(),
            data=job.as_dict(),
        )
        yield _frame(snapshot, with_id=False)
        for event in await deps.events.replay(key, after):
            if subscription.accept(event):
                yield _frame(event)
                if event.is_terminal:
                    return
        if job.finished and job.event_seq <= after:
            return  # nothing more will ever come
        idle_s = 0.0
        while not deps.shutdown.draining:
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
                    yield b": keep-alive\n\n"
                continue
            idle_s = 0.0
            yield _frame(event)
            if event.is_terminal:
                return
