"""The bus's outbox: batches what was sent during a write, one leader at a time, in order;
errors and cancellations reach exactly the senders they concern."""

from __future__ import annotations

import trio
import trio.testing

from lumiku.events.outbox import Interrupted, Outbox


class Writer:
    """Records each batch; every write takes one second of (virtual) time."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail_on = fail_on

    async def __call__(self, items: list[int]) -> list[str]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await trio.sleep(1)
            self.batches.append(items)
            if self.fail_on in items:
                raise ValueError("redis went away")
            return [f"ok {i}" for i in items]
        finally:
            self.in_flight -= 1


async def test_what_is_sent_during_a_write_goes_out_together_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    writer = Writer()
    outbox: Outbox[int, str] = Outbox(writer, max_batch=4)
    answers: dict[int, str] = {}

    async def send(i: int) -> None:
        answers[i] = await outbox.send(i)

    async with trio.open_nursery() as nursery:
        for i in range(10):
            nursery.start_soon(send, i)
            await trio.testing.wait_all_tasks_blocked()
    assert writer.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]
    assert writer.most_in_flight == 1
    assert answers == {i: f"ok {i}" for i in range(10)}


async def test_a_failed_write_reaches_its_own_batch_only(
    autojump_clock: trio.testing.MockClock,
) -> None:
    writer = Writer(fail_on=2)
    outbox: Outbox[int, str] = Outbox(writer)
    outcomes: dict[int, str] = {}

    async def send(i: int) -> None:
        try:
            outcomes[i] = await outbox.send(i)
        except ValueError as exc:
            outcomes[i] = str(exc)

    async with trio.open_nursery() as nursery:
        for i in range(4):
            nursery.start_soon(send, i)
            await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(5)
        nursery.start_soon(send, 4)
    assert writer.batches == [[0], [1, 2, 3], [4]]
    assert outcomes == {
        0: "ok 0",
        1: "redis went away",
        2: "redis went away",
        3: "redis went away",
        4: "ok 4",
    }


async def test_a_cancelled_sender_never_stalls_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    writer = Writer()
    outbox: Outbox[int, str] = Outbox(writer)
    answers: dict[int, str] = {}
    interrupted: list[int] = []

    async def send(i: int, scope: trio.CancelScope | None = None) -> None:
        try:
            with scope or trio.CancelScope():
                answers[i] = await outbox.send(i)
        except Interrupted:
            interrupted.append(i)

    leader, queued = trio.CancelScope(), trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, 0, leader)  # leads the first write
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(send, 1, queued)  # waits, then withdraws
        nursery.start_soon(send, 2)
        await trio.testing.wait_all_tasks_blocked()
        queued.cancel()
        leader.cancel()  # mid-write: its batch's outcome is unknown
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(send, 3)
    assert writer.batches == [[2], [3]]  # the first write never finished
    assert answers == {2: "ok 2", 3: "ok 3"}
    assert interrupted == []  # the cancelled leader left with trio.Cancelled, not an error


async def test_an_interrupted_batch_tells_its_other_senders(
    autojump_clock: trio.testing.MockClock,
) -> None:
    writer = Writer()
    outbox: Outbox[int, str] = Outbox(writer)
    outcomes: dict[int, str] = {}
    second_leader = trio.CancelScope()

    async def send(i: int, scope: trio.CancelScope | None = None) -> None:
        with scope or trio.CancelScope():
            try:
                outcomes[i] = await outbox.send(i)
            except Interrupted as exc:
                outcomes[i] = f"interrupted: {exc}"
            return
        outcomes[i] = "cancelled"

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, 0)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(send, 1, second_leader)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(send, 2)
        await trio.sleep(1.5)  # 0 is written; 1 leads the write of [1, 2]
        second_leader.cancel()
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(send, 3)
    assert writer.batches == [[0], [3]]
    assert outcomes == {
        0: "ok 0",
        1: "cancelled",
        2: "interrupted: the batch was cancelled mid-write",
        3: "ok 3",
    }
