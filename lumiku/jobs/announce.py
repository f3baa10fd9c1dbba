"""The event that announces a job's state change: one shape, whoever made the change
(a worker, the reaper, a cancel request)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lumiku import events

if TYPE_CHECKING:
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
