"""The events about a job: the one that announces a state change (one shape, whoever made
the change: a worker, the reaper, a cancel request), and what a late client is sent.

A client that subscribes to a job (`/api/ws` subscribe, `/api/jobs/{id}/events`) gets its
`snapshot`, then `catch_up`: the replayed events it has not seen and, when the job is
finished, its terminal event, built from the job row when the replay lacks it (after a
restart the in-process rings are empty; a Redis stream can miss it). So a client always
learns how a job ended, exactly once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lumiku import events

if TYPE_CHECKING:
    from datetime import datetime

    from lumiku.jobs.models import Job, Transition

_BY_STATUS = {
    "queued": events.RETRYING,
    "succeeded": events.COMPLETED,
    "failed": events.FAILED,
    "cancelled": events.CANCELLED,
}


def event_data(kind: str, job: Job, credit_refunded: int = 0) -> dict[str, Any]:
    """The `data` of a `kind` event about `job` (SPEC §7)."""
    error = job.error.as_dict() if job.error else None
    if kind == events.QUEUED:
        return {"kind": job.kind, "cost": job.cost}
    if kind == events.STARTED:
        return {"attempt": job.attempt}
    if kind == events.COMPLETED:
        return {"result": job.result}
    if kind == events.RETRYING:
        return {"attempt": job.attempt, "run_after": job.run_after.isoformat(), "error": error}
    if kind == events.FAILED:
        return {"error": error, "credit_refunded": credit_refunded}
    if kind == events.CANCELLED:
        return {"credit_refunded": credit_refunded}
    raise ValueError(f"no event data for {kind!r}")


def terminal_type(job: Job) -> str:
    """The terminal event type of a finished job."""
    kind = _BY_STATUS[job.status]
    if kind not in events.TERMINAL:
        raise ValueError(f"job {job.id} is {job.status}, not finished")
    return kind


def terminal_event(job: Job) -> events.Event:
    """The terminal event of finished `job`, as its worker published (or meant to): same
    type, seq and data, stamped with the job's `finished_at`."""
    kind = terminal_type(job)
    return events.Event(
        type=kind,
        job_id=str(job.id),
        user_id=str(job.user_id),
        seq=job.event_seq,
        ts=_ts(job.finished_at),
        data=event_data(kind, job, job.refunded),
    )


def snapshot(job: Job) -> events.Event:
    """The `generation:snapshot` of `job` for one client: the row, numbered with its
    `event_seq` (sent directly, never published)."""
    return events.Event(
        type=events.SNAPSHOT,
        job_id=str(job.id),
        user_id=str(job.user_id),
        seq=job.event_seq,
        ts=events.utc_now(),
        data=job.as_dict(),
    )


async def catch_up(
    bus: events.EventBus, subscription: events.Subscription, job: Job
) -> list[events.Event]:
    """The events of `job` to send a client after its snapshot, in seq order: those the bus
    replays that `subscription` has not seen (each marked seen), then, when `job` is
    finished and the client has not seen its terminal event, that event built from the
    row. Read `job` after the subscription was entered, so that whatever the row does not
    show yet reaches the subscription live."""
    key = str(job.id)
    sent = [e for e in await bus.replay(key, subscription.seen(key)) if subscription.accept(e)]
    if job.finished:
        terminal = terminal_event(job)
        if subscription.accept(terminal):  # the replay lacked it: its seq is still unseen
            sent.append(terminal)
    return sent


async def announce(bus: events.EventBus, transition: Transition) -> None:
    """Publish the event of `transition` (its kind follows from the job's new status)."""
    job = transition.job
    kind = _BY_STATUS[job.status]
    await bus.publish(
        events.Event(
            type=kind,
            job_id=str(job.id),
            user_id=str(job.user_id),
            seq=transition.event_seq,
            ts=events.utc_now(),
            data=event_data(kind, job, transition.credit_refunded),
        )
    )


def _ts(at: datetime | None) -> str:
    if at is None:
        return events.utc_now()
    return events.event_ts(at)
