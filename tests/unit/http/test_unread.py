"""`RequestBody`: an answer that ends before the body was read discards the rest first."""

from __future__ import annotations

from functools import partial
from typing import Any

import trio

from lumiku.http.unread import DISCARD_MAX_BYTES, DISCARD_S, RequestBody

Message = dict[str, Any]
CHUNK = b"x" * 65536


def chunk(more: bool = True) -> Message:
    return {"type": "http.request", "body": CHUNK, "more_body": more}


class Wire:
    """What hypercorn does around the app: a bounded queue of body messages from the client,
    and the sent messages recorded; the end of an answer queues the disconnect, as hypercorn
    does (waiting for room in the queue)."""

    def __init__(self) -> None:
        self.to_app, self.from_client = trio.open_memory_channel[Message](10)
        self.sent: list[Message] = []
        self.ended = trio.Event()
        self.client_bytes = 0  # what the client got into the queue

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if not message.get("more_body", False):
            await self.to_app.send({"type": "http.disconnect"})
            self.ended.set()

    async def client(self, chunks: int, *, finish: bool = True) -> None:
        for n in range(chunks):
            await self.to_app.send(chunk(more=not finish or n < chunks - 1))
            self.client_bytes += len(CHUNK)


ANSWER: Message = {"type": "http.response.body", "body": b"413 problem", "more_body": False}


async def test_a_whole_body_ends_the_answer_at_once() -> None:
    wire = Wire()
    body = RequestBody(wire.from_client.receive)
    await wire.to_app.send(chunk(more=False))
    assert (await body.receive())["more_body"] is False
    await body.finish(wire.send, ANSWER)
    assert wire.sent == [ANSWER]


async def test_the_answer_goes_first_then_the_rest_is_discarded_then_it_ends() -> None:
    wire = Wire()
    body = RequestBody(wire.from_client.receive, 160 * len(CHUNK))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(wire.client, 160)  # 10 MiB: far more than the queue holds
        await body.finish(wire.send, ANSWER)
    assert wire.sent == [
        {**ANSWER, "more_body": True},
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]
    assert body.complete.is_set()


async def test_the_app_receiving_too_ends_the_discard() -> None:
    """quart keeps reading bodies as they come: whichever receiver gets the last message,
    the discard ends."""
    wire = Wire()
    body = RequestBody(wire.from_client.receive)
    received: list[Message] = []

    async def app_reader() -> None:
        while True:
            received.append(await body.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(app_reader)
        nursery.start_soon(wire.client, 50)
        await body.finish(wire.send, ANSWER)
        nursery.cancel_scope.cancel()
    assert wire.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    assert received  # both received some of it


async def test_past_the_byte_bound_the_answer_ends_with_the_body_unread() -> None:
    """The client keeps sending forever: the discard stops at DISCARD_MAX_BYTES and the
    answer ends anyway; what still comes is dropped while the end is sent (hypercorn queues
    its disconnect behind it)."""
    wire = Wire()
    body = RequestBody(wire.from_client.receive)
    with trio.fail_after(10):  # without the dropping, ending the answer would wait forever
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(wire.client, 10**9, finish=False))
            await body.finish(wire.send, ANSWER)
            nursery.cancel_scope.cancel()
    assert wire.sent == [
        {**ANSWER, "more_body": True},
        {"type": "http.response.body", "body": b"", "more_body": False},
    ]
    assert DISCARD_MAX_BYTES < wire.client_bytes < 2 * DISCARD_MAX_BYTES


async def test_a_declared_body_past_the_bound_is_not_read_at_all() -> None:
    wire = Wire()
    body = RequestBody(wire.from_client.receive, DISCARD_MAX_BYTES + 1)
    await wire.to_app.send(chunk())
    await body.finish(wire.send, ANSWER)
    assert wire.sent[0] == {**ANSWER, "more_body": True}
    assert wire.ended.is_set()


async def test_a_client_that_stops_sending_is_given_up_after_the_time_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    wire = Wire()
    body = RequestBody(wire.from_client.receive)
    await wire.to_app.send(chunk())  # then nothing more
    started = trio.current_time()
    await body.finish(wire.send, ANSWER)
    assert trio.current_time() - started == DISCARD_S
    assert wire.sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
