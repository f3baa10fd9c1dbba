"""The values of the job queue (SPEC §6): `Job` and its parts, ids, refs and backoff.

A job goes `queued → running → succeeded | failed | cancelled`; a retry returns it from
`running` to `queued`. `event_seq` counts the events published for the job (§7): 1 for
`generation:queued`, +1 per start, progress, retry and terminal transition, so a row always
carries the seq of its newest event.

Money: `cost` is what one round charged (0 for users who pay nothing), `charges` how many
rounds were charged (1 + admin retries) and `refunded` what the current round gave back.
Round n's charge and refund entries carry the ledger reference `("job", ref_id(id, n))`.
"""

from __future__ import annotations

import base64
import binascii
import random
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from lumiku.errors import FieldError, ValidationFailed

if TYPE_CHECKING:
    from lumiku.db.store import Row

__all__ = [
    "FINISHED",
    "REF_TYPE",
    "STATUSES",
    "CancelOutcome",
    "Job",
    "JobError",
    "Page",
    "Progress",
    "Submission",
    "Transition",
    "backoff_s",
    "decode_cursor",
    "encode_cursor",
    "new_job_id",
    "ref_id",
]

QUEUED: Final = "queued"
RUNNING: Final = "running"
SUCCEEDED: Final = "succeeded"
FAILED: Final = "failed"
CANCELLED: Final = "cancelled"
STATUSES: Final = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINISHED: Final = frozenset({SUCCEEDED, FAILED, CANCELLED})
REF_TYPE: Final = "job"
STALLED: Final = "STALLED"
_RNG: Final = random.Random()


def new_job_id(now_ms: int | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix milliseconds, version 7, 74 random bits."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    rand_a = secrets.randbits(12)
    rand_b = secrets.randbits(62)
    value = (ms & (2**48 - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


def ref_id(job_id: uuid.UUID, charges: int) -> str:
    """The ledger ref_id of a job's round `charges`: the bare id for the first round, so
    `job:<id>` is the submission's charge, and `<id>/<n>` for the n-th (admin retries)."""
    return str(job_id) if charges == 1 else f"{job_id}/{charges}"


def backoff_s(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Delay before retry after `attempt` (1-based): base × 2^(attempt-1), at most `max_s`,
    with "equal jitter" (a random point in the upper half), so retries do not stampede."""
    delay = float(min(max_s, base_s * 2.0 ** max(attempt - 1, 0)))
    jitter = (rng or _RNG).uniform(0, delay / 2)
    return delay / 2 + jitter


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


@attrs.frozen
class Progress:
    """How far a running job is; `percent` 0..100 derived from completed/total."""

    percent: int = 0
    stage: str = ""
    completed: int = 0
    total: int = 0

    @classmethod
    def of(cls, completed: int, total: int, stage: str) -> Progress:
        percent = 0 if total <= 0 else max(0, min(100, completed * 100 // total))
        return cls(percent, stage, completed, total)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        return cls(
            int(data.get("percent", 0)),
            str(data.get("stage", "")),
            int(data.get("completed", 0)),
            int(data.get("total", 0)),
        )

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class JobError:
    """Why an attempt or the job failed; `retryable` tells the client whether it may help
    to try again."""

    code: str
    message: str
    retryable: bool = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobError:
        return cls(str(data["code"]), str(data.get("message", "")), bool(data.get("retryable")))

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.frozen
class Job:
    """One row of `jobs`."""

    id: uuid.UUID
    kind: str
    app: str
    user_id: uuid.UUID
    status: str
    cancel_requested: bool
    priority: int
    payload: Any
    attempt: int
    max_attempts: int
    run_after: datetime
    lease_expires_at: datetime | None
    worker_id: str | None
    progress: Progress
    result: Any
    error: JobError | None
    cost: int
    refunded: int
    charges: int
    event_seq: int
    request_id: str | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def from_row(cls, row: Row) -> Job:
        values = {field.name: row[field.name] for field in attrs.fields(cls)}
        values["cancel_requested"] = bool(values["cancel_requested"])
        values["progress"] = Progress.from_dict(values["progress"] or {})
        values["error"] = None if values["error"] is None else JobError.from_dict(values["error"])
        return cls(**values)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def ref_id(self) -> str:
        """The ledger ref_id of the current round's charge and refund."""
        return ref_id(self.id, self.charges)

    @property
    def undelivered(self) -> int:
        """What the current round could still refund."""
        return self.cost - self.refunded

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready for the API: ids as text, times as ISO-8601 UTC; without the worker,
        lease, idempotency and charge-round internals."""
        return {
            "id": str(self.id),
            "kind": self.kind,
            "app": self.app,
            "user_id": str(self.user_id),
            "status": self.status,
            "cancel_requested": self.cancel_requested,
            "priority": self.priority,
            "payload": self.payload,
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "run_after": _iso(self.run_after),
            "progress": self.progress.as_dict(),
            "result": self.result,
            "error": None if self.error is None else self.error.as_dict(),
            "cost": self.cost,
            "refunded": self.refunded,
            "request_id": self.request_id,
            "created_at": _iso(self.created_at),
            "updated_at": _iso(self.updated_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }


@attrs.frozen
class Submission:
    """What `submit` did: the job, whether it is an Idempotency-Key replay, what it charged."""

    job: Job
    replayed: bool
    charged: int


@attrs.frozen
class Transition:
    """A job after a state change, the seq of the event announcing it, and the credits
    this change refunded (for `generation:failed` / `generation:cancelled`)."""

    job: Job
    event_seq: int
    credit_refunded: int = 0


@attrs.frozen
class CancelOutcome:
    """`immediate`: the job is cancelled now; otherwise its worker was asked to stop.
    `changed`: this request cancelled it (False when it was cancelled already)."""

    job: Job
    immediate: bool
    changed: bool = True


@attrs.frozen
class Page:
    """Jobs newest first; `next_cursor` fetches the older ones (None at the end)."""

    jobs: tuple[Job, ...]
    next_cursor: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"jobs": [j.as_dict() for j in self.jobs], "next_cursor": self.next_cursor}


def encode_cursor(job_id: uuid.UUID) -> str:
    """The opaque cursor for the jobs older than `job_id`."""
    return base64.urlsafe_b64encode(job_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    """The job id inside a cursor from `encode_cursor`; ValidationFailed otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        return uuid.UUID(bytes=raw)
    except (binascii.Error, ValueError):
        raise ValidationFailed(
            [FieldError("cursor", "is not a cursor from a previous page")]
        ) from None
