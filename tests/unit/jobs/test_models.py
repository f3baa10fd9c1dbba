"""Job values without a database: ids, refs, backoff, progress, cursors, rows."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

import pytest

from lumiku.errors import ValidationFailed
from lumiku.jobs.models import (
    Job,
    JobError,
    Progress,
    backoff_s,
    decode_cursor,
    encode_cursor,
    new_job_id,
    ref_id,
)


def test_job_ids_are_uuid7_ordered_by_their_millisecond() -> None:
    first = new_job_id(now_ms=1_700_000_000_000)
    second = new_job_id(now_ms=1_700_000_000_001)
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert first.int >> 80 == 1_700_000_000_000
    assert first < second
    assert str(first) < str(second)
    assert len({new_job_id() for _ in range(1000)}) == 1000


def test_refs_name_the_round() -> None:
    job_id = new_job_id()
    assert ref_id(job_id, 1) == str(job_id)
    assert ref_id(job_id, 3) == f"{job_id}/3"


@pytest.mark.parametrize("attempt", [1, 2, 3, 8, 20])
def test_backoff_doubles_with_equal_jitter_and_a_ceiling(attempt: int) -> None:
    rng = random.Random(attempt)
    full = min(600.0, 10.0 * 2 ** (attempt - 1))
    for _ in range(50):
        assert full / 2 <= backoff_s(attempt, 10, 600, rng) <= full


def test_progress_percent_is_bounded() -> None:
    assert Progress.of(1, 3, "render") == Progress(33, "render", 1, 3)
    assert Progress.of(5, 0, "x").percent == 0
    assert Progress.of(9, 3, "x").percent == 100
    assert Progress.from_dict(Progress.of(1, 2, "s").as_dict()) == Progress(50, "s", 1, 2)


def test_cursors_round_trip_and_refuse_garbage() -> None:
    job_id = new_job_id()
    assert decode_cursor(encode_cursor(job_id)) == job_id
    with pytest.raises(ValidationFailed):
        decode_cursor("abc")


def test_a_row_becomes_a_job_and_its_api_form_hides_internals() -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    row = {
        "id": new_job_id(), "kind": "k", "app": "a", "user_id": uuid.uuid4(),
        "status": "failed", "cancel_requested": 0, "priority": 0, "payload": {"p": 1},
        "attempt": 3, "max_attempts": 3, "run_after": now, "lease_expires_at": None,
        "worker_id": "w", "progress": {"percent": 10, "stage": "s", "completed": 1,
        "total": 10}, "result": None, "error": {"code": "STALLED", "message": "m",
        "retryable": False}, "cost": 10, "refunded": 10, "charges": 1, "event_seq": 5,
        "request_id": None, "idempotency_key": "k", "created_at": now, "updated_at": now,
        "started_at": now, "finished_at": now,
    }  # fmt: skip
    job = Job.from_row(row)
    assert job.cancel_requested is False
    assert job.finished
    assert job.undelivered == 0
    assert job.error == JobError("STALLED", "m", False)
    data = job.as_dict()
    assert data["error"] == {"code": "STALLED", "message": "m", "retryable": False}
    assert data["finished_at"] == "2030-01-02T03:04:05+00:00"
    assert "worker_id" not in data
    assert "event_seq" not in data
