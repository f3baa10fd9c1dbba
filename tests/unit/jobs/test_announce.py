"""What a late client is sent (`announce.catch_up`): the replay it has not seen, and a
finished job's terminal event exactly once, from the row when the replay lacks it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import attrs

from lumiku import events
from lumiku.events import Event, InProcessBus
from lumiku.jobs.announce import catch_up, snapshot, terminal_event
from lumiku.jobs.models import Job, Progress

USER = uuid.UUID(int=7)
FINISHED_AT = datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC)


def job(status: str, event_seq: int, **changes: Any) -> Job:
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    values: dict[str, Any] = {
        "id": uuid.UUID(int=42),
        "kind": "demo.steps",
        "app": "demo",
        "user_id": USER,
        "status": status,
        "cancel_requested": False,
        "priority": 0,
        "payload": {},
        "attempt": 1,
        "max_attempts": 3,
        "run_after": at,
        "lease_expires_at": None,
        "worker_id": None,
        "progress": Progress(100, "done", 3, 3),
        "result": {"steps": 3} if status == "succeeded" else None,
        "error": None,
        "cost": 10,
        "refunded": 0,
        "charges": 1,
        "event_seq": event_seq,
        "request_id": None,
        "idempotency_key": None,
        "created_at": at,
        "updated_at": at,
        "started_at": at,
        "finished_at": FINISHED_AT if status in ("succeeded", "failed", "cancelled") else None,
    }
    return Job(**{**values, **changes})


def progress(seq: int, of: Job) -> Event:
    return Event(
        type=events.PROGRESS,
        job_id=str(of.id),
        user_id=str(of.user_id),
        seq=seq,
        ts=events.utc_now(),
        data={"completed": seq},
    )


async def test_a_finished_job_whose_replay_is_empty_gets_its_terminal_event_from_the_row() -> None:
    """After a restart the in-process rings are empty: only the row tells how it ended."""
    bus = InProcessBus()
    done = job("succeeded", 5)
    for after in (0, 1, 4):
        async with bus.subscribe_user(str(USER), job_id=str(done.id)) as sub:
            sub.resume_from(str(done.id), after)
            sent = await catch_up(bus, sub, done)
            assert sent == [terminal_event(done)]
            assert (sent[0].type, sent[0].seq, sent[0].data) == (
                events.COMPLETED,
                5,
                {"result": {"steps": 3}},
            )
            assert sent[0].ts == "2026-12-01T12:00:00.123Z"
            assert await catch_up(bus, sub, done) == []  # never twice
    async with bus.subscribe_user(str(USER), job_id=str(done.id)) as sub:
        sub.resume_from(str(done.id), 5)  # the client had it already
        assert await catch_up(bus, sub, done) == []


async def test_a_replayed_terminal_event_is_sent_once_and_not_built_again() -> None:
    bus = InProcessBus()
    done = job("failed", 4, refunded=10)
    published = [progress(seq, done) for seq in (1, 2, 3)]
    published.append(attrs.evolve(terminal_event(done), ts="2026-12-01T12:00:00.200Z"))
    for event in published:
        await bus.publish(event)
    async with bus.subscribe_user(str(USER), job_id=str(done.id)) as sub:
        sub.resume_from(str(done.id), 1)
        sent = await catch_up(bus, sub, done)
        assert sent == published[1:]  # the replayed one, not the row's
        assert sent[-1].data == {"error": None, "credit_refunded": 10}


async def test_a_replay_with_a_gap_still_ends_with_the_rows_terminal_event() -> None:
    bus = InProcessBus()
    done = job("cancelled", 7)
    for seq in (1, 2):  # 3..7 never reached this bus
        await bus.publish(progress(seq, done))
    async with bus.subscribe_user(str(USER), job_id=str(done.id)) as sub:
        sent = await catch_up(bus, sub, done)
        assert [(e.seq, e.type) for e in sent] == [
            (1, events.PROGRESS),
            (2, events.PROGRESS),
            (7, events.CANCELLED),
        ]


async def test_a_running_job_gets_the_replay_only_and_its_snapshot_carries_the_row() -> None:
    bus = InProcessBus()
    running = job("running", 2)
    await bus.publish(progress(1, running))
    await bus.publish(progress(2, running))
    async with bus.subscribe_user(str(USER), job_id=str(running.id)) as sub:
        sub.resume_from(str(running.id), 1)
        assert [e.seq for e in await catch_up(bus, sub, running)] == [2]
        assert sub.seen(str(running.id)) == 2
        await bus.publish(progress(3, running))
        assert (await sub.receive()).seq == 3  # live after the catch-up
    view = snapshot(running)
    assert (view.type, view.seq, view.data["status"]) == (events.SNAPSHOT, 2, "running")


async def test_a_candidate_accepted_after_a_replay_is_not_sent_twice() -> None:
    """The websocket's forwarder takes a live event as a candidate and accepts it under its
    send lock: a replay sent meanwhile (which had it) makes it a duplicate, skipped."""
    bus = InProcessBus()
    running = job("running", 0)
    async with bus.subscribe_user(str(USER)) as sub:
        await bus.publish(progress(1, running))
        candidate = await sub.receive_candidate()
        sub.resume_from(str(running.id), 0)  # a subscribe replays from 0 meanwhile
        assert [e.seq for e in await catch_up(bus, sub, running)] == [1]
        assert not sub.accept(candidate)
