"""The in-process event bus: event values, delivery, overflow, replay rings (SPEC §7)."""

from __future__ import annotations

import json

import attrs
import pytest
import trio
import trio.testing

from lumiku import events
from lumiku.events import Event, InProcessBus, Overflowed


def event(seq: int, *, job_id: str = "job-1", user_id: str = "user-1", type: str = "") -> Event:
    return Event(
        type=type or events.PROGRESS,
        job_id=job_id,
        user_id=user_id,
        seq=seq,
        ts="2026-11-02T10:00:00.000Z",
        data={"percent": seq, "stage": "render", "completed": seq, "total": 100},
    )


def drain(sub: events.Subscription) -> list[Event]:
    received = []
    while True:
        try:
            received.append(sub.receive_nowait())
        except trio.WouldBlock:
            return received


# --- Event ---------------------------------------------------------------------------------


def test_client_json_has_exactly_the_spec_fields_and_no_user_id() -> None:
    sent = event(3).to_json()
    assert set(sent) == {"type", "job_id", "seq", "ts", "data"}
    assert sent["seq"] == 3
    assert sent["data"] == {"percent": 3, "stage": "render", "completed": 3, "total": 100}


def test_event_round_trips_through_json_text() -> None:
    original = event(7, type=events.COMPLETED)
    assert Event.from_json(json.loads(json.dumps(original.to_record()))) == original
    client_form = json.loads(json.dumps(original.to_json()))
    assert Event.from_json(client_form, user_id="user-1") == original
    assert original.is_terminal
    assert not event(1).is_terminal


@pytest.mark.parametrize(
    "broken",
    [
        [],
        {"type": "generation:progress", "job_id": "j", "seq": 1, "ts": "t"},  # no user_id
        {"type": "generation:bogus", "job_id": "j", "user_id": "u", "seq": 1, "ts": "t"},
        {"type": "generation:queued", "job_id": "j", "user_id": "u", "seq": "1", "ts": "t"},
        {"type": "generation:queued", "job_id": "j", "user_id": "u", "seq": True, "ts": "t"},
        {"type": "generation:queued", "job_id": 5, "user_id": "u", "seq": 1, "ts": "t"},
        {
            "type": "generation:queued",
            "job_id": "j",
            "user_id": "u",
            "seq": 1,
            "ts": "t",
            "data": 3,
        },
    ],
)
def test_malformed_records_are_value_errors(broken: object) -> None:
    with pytest.raises(ValueError, match="event"):
        Event.from_json(broken)


def test_type_names_are_the_spec_names() -> None:
    assert {
        "generation:completed",
        "generation:failed",
        "generation:cancelled",
    } == events.TERMINAL
    assert {
        "generation:queued",
        "generation:started",
        "generation:progress",
        "generation:retrying",
        "generation:snapshot",
    } | events.TERMINAL == events.TYPES


def test_utc_now_is_iso_utc() -> None:
    stamp = events.utc_now()
    assert stamp.endswith("Z")
    assert len(stamp) == len("2026-11-02T10:00:00.000Z")


# --- Delivery ------------------------------------------------------------------------------


async def test_delivery_reaches_only_the_user_and_in_publish_order() -> None:
    bus = InProcessBus()
    async with bus.subscribe_user("user-1") as mine, bus.subscribe_user("user-2") as theirs:
        for seq in range(1, 11):
            await bus.publish(event(seq, job_id="job-a"))
            await bus.publish(event(seq, job_id="job-b", user_id="user-2"))
        await bus.publish(event(1, job_id="job-c"))
        received = drain(mine)
        assert [(e.job_id, e.seq) for e in received] == [
            *(("job-a", seq) for seq in range(1, 11)),
            ("job-c", 1),
        ]
        assert {e.user_id for e in drain(theirs)} == {"user-2"}
    stats = bus.statistics()
    assert (stats.published, stats.delivered, stats.dropped_overflow) == (21, 21, 0)


async def test_receive_waits_for_the_next_event() -> None:
    bus = InProcessBus()
    async with bus.subscribe_user("user-1") as sub, trio.open_nursery() as nursery:
        got: list[Event] = []

        async def reader() -> None:
            got.append(await sub.receive())

        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []
        await bus.publish(event(1))
    assert got == [event(1)]


async def test_job_filter_and_every_subscriber_of_a_user() -> None:
    bus = InProcessBus()
    async with (
        bus.subscribe_user("user-1", job_id="job-b") as one_job,
        bus.subscribe_user("user-1") as everything,
    ):
        await bus.publish(event(1, job_id="job-a"))
        await bus.publish(event(1, job_id="job-b"))
        assert [e.job_id for e in drain(one_job)] == ["job-b"]
        assert [e.job_id for e in drain(everything)] == ["job-a", "job-b"]


async def test_each_jobs_events_reach_a_subscription_once_and_increasing() -> None:
    bus = InProcessBus()
    async with bus.subscribe_user("user-1") as sub:
        for seq in (1, 2, 2, 1, 3):
            await bus.publish(event(seq))
        assert [e.seq for e in drain(sub)] == [1, 2, 3]


async def test_resume_from_then_replay_then_live_has_no_gap_and_no_duplicate() -> None:
    bus = InProcessBus()
    for seq in range(1, 6):
        await bus.publish(event(seq))
    async with bus.subscribe_user("user-1") as sub:
        await bus.publish(event(6))  # arrives live between subscribing and replaying
        sub.resume_from("job-1", 2)
        sent = [e.seq for e in await bus.replay("job-1", 2) if sub.accept(e)]
        await bus.publish(event(7))
        sent += [e.seq for e in drain(sub)]
    assert sent == [3, 4, 5, 6, 7]


async def test_a_snapshot_or_seq_zero_is_never_published() -> None:
    bus = InProcessBus()
    with pytest.raises(ValueError, match="snapshot"):
        await bus.publish(event(1, type=events.SNAPSHOT))
    with pytest.raises(ValueError, match="seq"):
        await bus.publish(event(0))
    assert bus.statistics().published == 0


async def test_slow_subscriber_overflows_without_slowing_anyone() -> None:
    bus = InProcessBus()
    total = events.BUFFER_EVENTS + 44
    fast_received: list[int] = []
    async with (
        bus.subscribe_user("user-1") as slow,
        bus.subscribe_user("user-1") as fast,
        trio.open_nursery() as nursery,
    ):

        async def read_fast() -> None:
            while len(fast_received) < total:
                fast_received.append((await fast.receive()).seq)

        nursery.start_soon(read_fast)
        for seq in range(1, total + 1):
            await bus.publish(event(seq))  # never waits, even with `slow` full
            await trio.testing.wait_all_tasks_blocked()
        assert slow.overflowed
        assert not fast.overflowed
        with pytest.raises(Overflowed):
            await slow.receive()
        with pytest.raises(Overflowed):
            slow.receive_nowait()
    assert fast_received == list(range(1, total + 1))
    stats = bus.statistics()
    assert stats.dropped_overflow == 44
    assert stats.overflows == 1
    assert stats.delivered == total + events.BUFFER_EVENTS


async def test_buffer_size_is_configurable() -> None:
    bus = InProcessBus(buffer_events=2)
    async with bus.subscribe_user("user-1") as sub:
        for seq in (1, 2):
            await bus.publish(event(seq))
        assert bus.statistics().overflows == 0
        await bus.publish(event(3))
        assert bus.statistics().overflows == 1
        assert sub.overflowed
    with pytest.raises(ValueError, match="buffer"):
        InProcessBus(buffer_events=0)


async def test_leaving_the_subscription_unregisters_it() -> None:
    bus = InProcessBus()
    async with bus.subscribe_user("user-1") as sub:
        assert bus.statistics().subscribers == 1
    assert bus.statistics().subscribers == 0
    await bus.publish(event(1))
    assert bus.statistics().delivered == 0
    with pytest.raises(trio.ClosedResourceError):
        await sub.receive()


# --- Replay --------------------------------------------------------------------------------


async def test_replay_returns_exactly_the_events_after_seq_in_order() -> None:
    bus = InProcessBus()
    for seq in (1, 2, 3, 5, 4, 6, 7, 8, 9, 10):
        await bus.publish(event(seq))
    await bus.publish(event(1, job_id="job-other"))
    assert [e.seq for e in await bus.replay("job-1", 0)] == list(range(1, 11))
    assert [e.seq for e in await bus.replay("job-1", 4)] == [5, 6, 7, 8, 9, 10]
    assert await bus.replay("job-1", 10) == []
    assert await bus.replay("job-unknown", 0) == []


async def test_ring_keeps_the_last_1000_events_of_a_job() -> None:
    bus = InProcessBus()
    for seq in range(1, 1501):
        await bus.publish(event(seq))
    assert [e.seq for e in await bus.replay("job-1", 0)] == list(range(501, 1501))
    assert [e.seq for e in await bus.replay("job-1", 1400)] == list(range(1401, 1501))


async def test_ring_keeps_an_hour_and_drops_idle_jobs(autojump_clock: trio.abc.Clock) -> None:
    bus = InProcessBus()
    await bus.publish(event(1))
    await bus.publish(event(2))
    await bus.publish(event(1, job_id="job-idle"))
    await trio.sleep(1800)
    await bus.publish(event(3))
    await trio.sleep(1801)  # events 1, 2 and job-idle are now older than an hour
    assert [e.seq for e in await bus.replay("job-1", 0)] == [3]
    assert await bus.replay("job-idle", 0) == []
    assert "job-idle" in bus.rings  # idle jobs go when something is next published
    await bus.publish(event(1, job_id="job-new"))
    assert "job-idle" not in bus.rings
    assert len(bus.rings) == 2
    await trio.sleep(3600)
    assert await bus.replay("job-1", 0) == []


def test_ring_holds_at_most_max_jobs() -> None:
    rings = events.local.JobRings(max_jobs=3)

    async def fill() -> None:
        for n in range(10):
            rings.add(event(1, job_id=f"job-{n}"))

    trio.run(fill)
    assert len(rings) == 3


# --- Bus ---------------------------------------------------------------------------------


async def test_in_process_fanout_starts_and_waits_until_cancelled() -> None:
    bus = events.make_bus(None, "instance-1")
    assert isinstance(bus, InProcessBus)
    async with trio.open_nursery() as nursery:
        await nursery.start(events.serve_fanout, bus)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()


def test_statistics_are_a_frozen_snapshot() -> None:
    stats = InProcessBus().statistics()
    assert stats.fanout_connected is None
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.published = 1  # type: ignore[misc]
