"""RedisBus against a real Redis: cross-instance fan-out, one subscription per instance,
replay from the streams, and an outage (SPEC §7, §15)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from functools import partial

import attrs
import coredis
import pytest
import trio
import trio.testing

from lumiku import events
from lumiku.config import RedisSettings
from lumiku.errors import RedisUnavailable
from lumiku.events import Event, RedisBus
from lumiku.redis import open_redis, publish_events, read_stream_after
from lumiku.retrying import TaskTroubles
from lumiku.testing import TcpProxy

GUARD_S = 10
POLL_S = 0.02


def event(seq: int, *, job_id: str = "job-1", user_id: str = "user-1") -> Event:
    return Event(
        type=events.PROGRESS,
        job_id=job_id,
        user_id=user_id,
        seq=seq,
        ts=events.utc_now(),
        data={"percent": seq, "stage": "render", "completed": seq, "total": 100},
    )


@pytest.fixture
def channel() -> str:
    """A channel of the test's own: pub/sub ignores the database number, so another test
    run using the same Redis server must not be counted or heard."""
    return f"lumiku:events:test:{uuid.uuid4().hex}"


@contextlib.asynccontextmanager
async def running_buses(
    channel: str, *urls: str, backoff_min_s: float = 0.5, troubles: TaskTroubles | None = None
) -> AsyncIterator[list[RedisBus]]:
    """One RedisBus per URL, each on a client of its own, each running its fan-out (which
    reports its trouble to `troubles`)."""
    async with contextlib.AsyncExitStack() as stack:
        buses = []
        for n, url in enumerate(urls):
            client = await stack.enter_async_context(open_redis(RedisSettings(url=url)))
            assert client is not None
            buses.append(
                RedisBus(
                    client,
                    f"instance-{n}",
                    channel=channel,
                    backoff_min_s=backoff_min_s,
                    backoff_max_s=backoff_min_s * 4,
                )
            )
        nursery = await stack.enter_async_context(trio.open_nursery())
        for bus in buses:
            await nursery.start(partial(bus.serve_fanout, troubles=troubles))
        yield buses
        nursery.cancel_scope.cancel()


async def receive_seqs(sub: events.Subscription, count: int) -> list[int]:
    return [(await sub.receive()).seq for _ in range(count)]


def nothing_buffered(sub: events.Subscription) -> bool:
    with contextlib.suppress(trio.WouldBlock):
        sub.receive_nowait()
        return False
    return True


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll (the caller holds the fail_after guard): only for reconnections, whose timing
    belongs to the network and the backoff."""
    while not condition():
        await trio.sleep(POLL_S)


async def numsub(url: str, channel: str) -> int:
    async with coredis.Redis.from_url(url, verify_version=False) as client:
        return (await client.pubsub_numsub(channel))[channel.encode()]


async def test_events_published_on_a_reach_subscribers_on_b_in_order(
    redis_url: str, channel: str
) -> None:
    with trio.fail_after(GUARD_S):
        async with (
            running_buses(channel, redis_url, redis_url) as (a, b),
            b.subscribe_user("user-1") as on_b,
            b.subscribe_user("user-2") as other_user_on_b,
            a.subscribe_user("user-1") as on_a,
        ):
            for seq in range(1, 21):
                await a.publish(event(seq))
                await a.publish(event(seq, job_id="job-2", user_id="user-2"))
            assert await receive_seqs(on_b, 20) == list(range(1, 21))
            assert await receive_seqs(on_a, 20) == list(range(1, 21))
            # A marker from B, after A's messages on the channel: once A has it, A's fan-out
            # has seen (and skipped) all of A's own messages, so nothing came twice.
            await b.publish(event(1, job_id="marker"))
            assert (await on_a.receive()).job_id == "marker"
            assert nothing_buffered(on_a)
            assert (await on_b.receive()).job_id == "marker"
            assert nothing_buffered(on_b)
            got = [await other_user_on_b.receive() for _ in range(20)]
            assert {e.user_id for e in got} == {"user-2"}
            assert [e.seq for e in got] == list(range(1, 21))
            assert nothing_buffered(other_user_on_b)
    assert a.statistics().redis_failures == 0
    assert a.statistics().published == 40


async def test_one_redis_subscription_per_instance_whatever_the_subscribers(
    redis_url: str, channel: str
) -> None:
    with trio.fail_after(GUARD_S):
        async with running_buses(channel, redis_url, redis_url) as (a, b):
            assert await numsub(redis_url, channel) == 2
            async with contextlib.AsyncExitStack() as stack:
                subs = [
                    await stack.enter_async_context(
                        (a if n % 2 else b).subscribe_user(f"user-{n % 5}")
                    )
                    for n in range(50)
                ]
                assert a.statistics().subscribers + b.statistics().subscribers == 50
                assert await numsub(redis_url, channel) == 2
                await a.publish(event(1, user_id="user-3"))
                for sub in subs:
                    if sub.user_id == "user-3":
                        assert (await sub.receive()).seq == 1
                assert await numsub(redis_url, channel) == 2
        assert await numsub(redis_url, channel) == 0


async def test_replay_after_reconnect_returns_exactly_the_missed_events(
    redis_url: str, channel: str
) -> None:
    with trio.fail_after(GUARD_S):
        async with running_buses(channel, redis_url, redis_url) as (a, b):
            async with b.subscribe_user("user-1") as first:
                for seq in range(1, 6):
                    await a.publish(event(seq))
                assert await receive_seqs(first, 5) == [1, 2, 3, 4, 5]
            for seq in range(6, 13):  # the client is away
                await a.publish(event(seq))
            await a.publish(event(1, job_id="job-other"))
            async with b.subscribe_user("user-1", job_id="job-1") as second:
                second.resume_from("job-1", 5)
                replayed = [e for e in await b.replay("job-1", 5) if second.accept(e)]
                assert [e.seq for e in replayed] == list(range(6, 13))
                assert replayed[0].user_id == "user-1"
                assert replayed[0].data == event(6).data
                await a.publish(event(13))
                assert (await second.receive()).seq == 13
            assert [e.seq for e in await b.replay("job-1", 0)] == list(range(1, 14))
            assert await b.replay("job-1", 13) == []
            assert await b.replay("job-none", 0) == []


async def test_redis_outage_keeps_local_delivery_and_the_fanout_comes_back(
    redis_proxy: tuple[TcpProxy, str], channel: str
) -> None:
    proxy, url = redis_proxy
    troubles = TaskTroubles()
    with trio.fail_after(GUARD_S):
        async with (
            running_buses(channel, url, url, backoff_min_s=0.05, troubles=troubles) as (a, b),
            a.subscribe_user("user-1") as on_a,
            b.subscribe_user("user-1") as on_b,
        ):
            await a.publish(event(1))
            assert (await on_b.receive()).seq == 1
            assert (await on_a.receive()).seq == 1
            assert troubles.snapshot()["status"] == "ok"

            proxy.take_down()
            await wait_until(lambda: not b.statistics().fanout_connected)
            await wait_until(lambda: "events.fanout" in troubles.failing)  # listed, not fatal
            await a.publish(event(2))  # Redis is gone: A's own sockets still get it
            assert (await on_a.receive()).seq == 2
            assert a.statistics().redis_failures >= 1
            assert [e.seq for e in await a.replay("job-1", 0)] == [1, 2]  # A's ring

            proxy.bring_up()
            await wait_until(lambda: bool(b.statistics().fanout_connected))
            await wait_until(lambda: bool(a.statistics().fanout_connected))
            assert troubles.snapshot() == {"status": "ok", "failing": {}}
            await a.publish(event(3))
            # 2 waited in A's backlog and went out first: late, but in order
            assert await receive_seqs(on_b, 2) == [2, 3]
            assert (await on_a.receive()).seq == 3
            assert nothing_buffered(on_a)
            assert [e.seq for e in await a.replay("job-1", 0)] == [1, 2, 3]
            assert [e.seq for e in await b.replay("job-1", 0)] == [1, 2, 3]
            assert a.statistics().backlog == 0


async def test_fanout_starts_while_redis_is_down_and_subscribes_when_it_returns(
    redis_proxy: tuple[TcpProxy, str], redis_url: str, channel: str
) -> None:
    proxy, url = redis_proxy
    proxy.take_down()
    with trio.fail_after(GUARD_S):
        async with running_buses(channel, url, redis_url, backoff_min_s=0.05) as (behind, up):
            assert behind.statistics().fanout_connected is False
            assert await behind.replay("job-1", 0) == []  # degraded, not an error
            async with behind.subscribe_user("user-1") as sub:
                proxy.bring_up()
                await wait_until(lambda: bool(behind.statistics().fanout_connected))
                await up.publish(event(1))
                assert (await sub.receive()).seq == 1


async def test_malformed_channel_messages_are_skipped(redis_url: str, channel: str) -> None:
    with trio.fail_after(GUARD_S):
        async with (
            running_buses(channel, redis_url) as (bus,),
            bus.subscribe_user("user-1") as sub,
            coredis.Redis.from_url(redis_url, verify_version=False) as raw,
        ):
            for junk in (b"not json", b"[1]", b'{"instance": "x", "event": {"seq": 1}}'):
                await raw.publish(channel, junk)
            await RedisBus(raw, "elsewhere", channel=channel).publish(event(1))
            assert (await sub.receive()).seq == 1


async def test_streams_are_capped_expire_and_keep_the_first_of_a_seq(
    redis_url: str, channel: str
) -> None:
    with trio.fail_after(GUARD_S):
        async with (
            running_buses(channel, redis_url) as (bus,),
            coredis.Redis.from_url(redis_url, verify_version=False) as raw,
        ):
            for seq in range(1, 1201):
                await bus.publish(event(seq))
            key = events.STREAM_PREFIX + "job-1"
            assert 1000 <= await raw.xlen(key) < 1200
            assert 3500 < await raw.ttl(key) <= 3600
            kept = [e.seq for e in await bus.replay("job-1", 0)]  # stream ∪ this ring
            assert kept == list(range(kept[0], 1201))
            assert kept[0] <= 201  # at least the last 1000
            other = RedisBus(raw, "elsewhere", channel=channel)
            assert [e.seq for e in await other.replay("job-1", 1190)] == list(range(1191, 1201))
            assert [e.seq for e in await other.replay("job-1", 0)] == kept

            first, again = event(1, job_id="job-2"), event(1, job_id="job-2")
            await bus.publish(first)
            await bus.publish(attrs.evolve(again, data={"percent": 99}))
            assert await other.replay("job-2", 0) == [first]


def terminal(seq: int, *, job_id: str) -> Event:
    return Event(
        type=events.COMPLETED,
        job_id=job_id,
        user_id="user-1",
        seq=seq,
        ts=events.utc_now(),
        data={"result": {"seq": seq}},
    )


async def test_restore_publishes_only_the_events_missing_from_their_streams(
    redis_url: str, channel: str
) -> None:
    with trio.fail_after(GUARD_S):
        async with (
            running_buses(channel, redis_url, redis_url) as (a, b),
            a.subscribe_user("user-1") as on_a,
            b.subscribe_user("user-1") as on_b,
        ):
            # job-1's publisher got to its terminal event; job-2's died before it did.
            for seq in (1, 2):
                await a.publish(event(seq, job_id="job-1"))
                await a.publish(event(seq, job_id="job-2"))
            await a.publish(terminal(3, job_id="job-1"))
            assert await receive_seqs(on_a, 5) == [1, 1, 2, 2, 3]
            assert await receive_seqs(on_b, 5) == [1, 1, 2, 2, 3]
            candidates = [terminal(3, job_id="job-1"), terminal(3, job_id="job-2")]

            assert await b.restore(candidates) == 1
            for sub in (on_a, on_b):  # B's own subscriber directly, A's through the fan-out
                restored = await sub.receive()
                assert (restored.job_id, restored.seq, restored.type) == (
                    "job-2",
                    3,
                    events.COMPLETED,
                )
            assert await b.restore(candidates) == 0  # restoring again delivers nothing
            assert [e.seq for e in await a.replay("job-2", 0)] == [1, 2, 3]
            # a marker: once it arrived, anything restored twice would have arrived before it
            await a.publish(event(1, job_id="marker"))
            assert (await on_b.receive()).job_id == "marker"
            assert (await on_a.receive()).job_id == "marker"
            assert nothing_buffered(on_a)
            assert nothing_buffered(on_b)


async def test_a_hanging_redis_costs_one_timeout_not_one_per_event(
    autojump_clock: trio.testing.MockClock, channel: str
) -> None:
    """A Redis that accepts connections but never answers: the first publish waits for its
    timeout, the next ones are skipped (delivered locally only) while the breaker is open."""

    async def black_hole(stream: trio.SocketStream) -> None:
        async for _chunk in stream:
            pass  # read everything, answer nothing

    async with trio.open_nursery() as nursery:
        serve = partial(trio.serve_tcp, black_hole, 0, host="127.0.0.1")
        (listener,) = await nursery.start(serve)
        port = listener.socket.getsockname()[1]
        settings = RedisSettings(url=f"redis://127.0.0.1:{port}/0", connect_timeout_s=5)
        async with open_redis(settings) as client:
            assert client is not None
            bus = RedisBus(client, "hung", channel=channel, timeout_s=1.0, backoff_min_s=10)
            async with bus.subscribe_user("user-1") as sub:
                started = trio.current_time()
                for seq in range(1, 21):
                    await bus.publish(event(seq))
                took_s = trio.current_time() - started
                assert await receive_seqs(sub, 20) == list(range(1, 21))
        nursery.cancel_scope.cancel()
    stats = bus.statistics()
    assert (stats.redis_failures, stats.redis_skipped) == (1, 19)
    assert took_s < 2  # one 1 s timeout, not twenty


def job_story(job_id: str, progress: int) -> list[Event]:
    """A job's events: queued, started, `progress` progress events, completed."""
    types = [events.QUEUED, events.STARTED, *[events.PROGRESS] * progress, events.COMPLETED]
    return [
        Event(
            type=kind,
            job_id=job_id,
            user_id="user-1",
            seq=seq,
            ts=events.utc_now(),
            data={"seq": seq},
        )
        for seq, kind in enumerate(types, 1)
    ]


async def test_events_published_during_an_outage_reach_the_stream_once_redis_is_back(
    redis_proxy: tuple[TcpProxy, str], channel: str
) -> None:
    """Redis cut during a job's progress: A (running the job) keeps delivering locally;
    once Redis is back, A's backlog is written ahead of its next event or by `flush` (the
    reaper's pass), and B replays the whole story, with no gap, and hears what it missed
    live in order."""
    proxy, url = redis_proxy
    story = job_story("job-1", progress=6)  # seq 1..9, 9 the terminal event
    other = job_story("job-2", progress=2)  # ends during the outage: only flush writes it
    with trio.fail_after(GUARD_S):
        async with (
            running_buses(channel, url, url, backoff_min_s=0.05) as (a, b),
            a.subscribe_user("user-1", job_id="job-1") as on_a,
            b.subscribe_user("user-1", job_id="job-1") as on_b,
        ):
            for published in story[:3]:
                await a.publish(published)
            assert await receive_seqs(on_b, 3) == [1, 2, 3]

            proxy.take_down()
            for published in [*story[3:8], *other]:
                await a.publish(published)  # progress 4..8; job-2 from start to end
            assert await receive_seqs(on_a, 8) == list(range(1, 9))  # local delivery
            assert a.statistics().redis_failures >= 1
            assert a.statistics().backlog == 5 + len(other)
            assert [e.seq for e in await b.replay("job-1", 0)] == []  # B: Redis is down

            proxy.bring_up()
            await wait_until(lambda: bool(a.statistics().fanout_connected))
            await wait_until(lambda: bool(b.statistics().fanout_connected))
            await a.publish(story[8])  # the terminal event, after the backlog
            assert await receive_seqs(on_b, 6) == list(range(4, 10))
            assert (await on_a.receive()).seq == 9
            assert [e.seq for e in await b.replay("job-1", 0)] == list(range(1, 10))
            assert [e.seq for e in await b.replay("job-1", 3)] == list(range(4, 10))
            assert await b.replay("job-1", 0) == story
            assert await b.replay("job-2", 0) == other  # written with the same batch
            assert a.statistics().backlog == 0
            assert await a.flush() == 0  # nothing left


async def test_flush_writes_the_backlog_when_nothing_else_is_published(
    redis_proxy: tuple[TcpProxy, str], channel: str
) -> None:
    proxy, url = redis_proxy
    story = job_story("job-1", progress=3)
    with trio.fail_after(GUARD_S):
        async with running_buses(channel, url, url, backoff_min_s=0.05) as (a, b):
            await a.publish(story[0])
            proxy.take_down()
            for published in story[1:]:
                await a.publish(published)
            with pytest.raises(RedisUnavailable):
                await a.flush()  # still down: kept for the next try
            assert a.statistics().backlog == len(story) - 1
            proxy.bring_up()
            await wait_until(lambda: bool(a.statistics().fanout_connected))
            assert await a.flush() == len(story) - 1
            assert await b.replay("job-1", 0) == story
            assert a.statistics().backlog == 0


async def test_a_terminal_event_restored_first_leaves_room_for_the_backlog(
    redis_proxy: tuple[TcpProxy, str], redis_url: str, channel: str
) -> None:
    """Another instance's reaper restored the job's terminal event (from its row) before A
    wrote its backlog: the stream takes the backlog in place, in seq order, and a client on
    B gets the terminal event once."""
    proxy, url = redis_proxy
    story = job_story("job-1", progress=4)  # 1..7
    with trio.fail_after(GUARD_S):
        async with (
            running_buses(channel, url, redis_url, backoff_min_s=0.05) as (a, b),
            b.subscribe_user("user-1") as on_b,
        ):
            for published in story[:2]:
                await a.publish(published)
            assert await receive_seqs(on_b, 2) == [1, 2]
            proxy.take_down()
            for published in story[2:]:
                await a.publish(published)
            assert await b.restore([story[-1]]) == 1
            assert (await on_b.receive()).seq == 7
            assert [e.seq for e in await b.replay("job-1", 0)] == [1, 2, 7]

            proxy.bring_up()
            await wait_until(lambda: bool(a.statistics().fanout_connected))
            assert await a.flush() == 5
            assert await b.replay("job-1", 0) == story
            # A published the late ones too; B's client had seen past them: a marker from A
            # comes after them on the channel, and is all B's client gets
            await a.publish(event(1, job_id="marker"))
            assert (await on_b.receive()).job_id == "marker"
            assert nothing_buffered(on_b)


async def test_the_stream_merges_a_late_seq_in_place_and_keeps_the_first_of_a_seq(
    redis_url: str, channel: str
) -> None:
    with trio.fail_after(GUARD_S):
        async with coredis.Redis.from_url(redis_url, verify_version=False) as raw:
            key = events.STREAM_PREFIX + f"job-late-{uuid.uuid4().hex}"

            def item(seq: int, note: str) -> tuple[str, int, str, str]:
                record = {**event(seq, job_id="job-late").to_record(), "data": {"note": note}}
                record["ts"] = "2026-01-01T00:00:00.000Z"
                return (key, seq, json.dumps(record), "{}")

            async def publish(*items: tuple[str, int, str, str]) -> list[bool]:
                return await publish_events(raw, items, channel, max_len=1000, ttl_s=60)

            assert await publish(item(1, "a"), item(2, "a"), item(9, "a")) == [True] * 3
            assert await publish(item(5, "a"), item(3, "a"), item(5, "b"), item(9, "b")) == [
                True,
                True,
                False,
                False,
            ]
            entries = [json.loads(e) for e in await read_stream_after(raw, key, 0)]
            assert [(e["seq"], e["data"]["note"]) for e in entries] == [
                (1, "a"),
                (2, "a"),
                (3, "a"),
                (5, "a"),
                (9, "a"),
            ]
            assert 0 < await raw.ttl(key) <= 60
            assert await publish(item(10, "a")) == [True]
            # a key that is not a stream fails its own event, never the batch (which may
            # carry a backlog)
            poisoned = events.STREAM_PREFIX + "job-poisoned"
            await raw.set(poisoned, "x")
            try:
                assert await publish((poisoned, 1, "{}", "{}"), item(11, "a")) == [False, True]
            finally:
                await raw.delete([poisoned])
            assert await read_stream_after(raw, key, 5) == [
                item(9, "a")[2].encode(),
                item(10, "a")[2].encode(),
                item(11, "a")[2].encode(),
            ]


async def test_the_backlog_is_bounded_and_drops_the_oldest(
    redis_proxy: tuple[TcpProxy, str], channel: str
) -> None:
    proxy, url = redis_proxy
    story = job_story("job-1", progress=8)  # 1..11
    with trio.fail_after(GUARD_S):
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(open_redis(RedisSettings(url=url)))
            assert client is not None
            a = RedisBus(client, "a", channel=channel, backoff_min_s=0.05, backlog_events=4)
            proxy.take_down()
            for published in story:
                await a.publish(published)
            stats = a.statistics()
            assert (stats.backlog, stats.backlog_dropped) == (4, len(story) - 4)
            proxy.bring_up()
            while True:  # the breaker may still skip Redis for its backoff
                with contextlib.suppress(RedisUnavailable):
                    assert await a.flush() == 4
                    break
                await trio.sleep(POLL_S)
            # the newest four reached the stream; the dropped ones are a known gap
            assert await RedisBus(client, "b", channel=channel).replay("job-1", 0) == story[-4:]
