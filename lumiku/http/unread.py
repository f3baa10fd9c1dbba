"""Answers that end before the request's body was read: the rest is read and discarded first.

hypercorn closes the connection as soon as an answer ends while the client is still sending
its body (the connection cannot be reused), and closing a socket with unread data resets
it: a client still writing (a 10 MB body answered 413 by Content-Length alone, a 401 to an
upload without a token) got a reset instead of the answer. So the edge watches whether the
app has received the whole body (`RequestBody.receive` is the `receive` the app gets), and
when an answer ends before that, `RequestBody.finish` sends the answer's bytes, reads and
discards the rest of the body — at most DISCARD_MAX_BYTES for at most DISCARD_S, as servers
do — and only then ends the answer. A body larger than that still has its connection closed
under it (and may be reset).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import attrs
import trio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping
    from typing import Any

    Message = MutableMapping[str, Any]

DISCARD_MAX_BYTES: Final = 32 * 1024 * 1024
DISCARD_S: Final = 10.0


@attrs.define
class RequestBody:
    """One HTTP request's body as the app receives it: whole yet or not."""

    _receive: Callable[[], Awaitable[Message]]
    _declared_bytes: int | None = None  # Content-Length, when given
    complete: trio.Event = attrs.field(factory=trio.Event)

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.disconnect" or not message.get("more_body", False):
            self.complete.set()
        return message

    async def finish(self, send: Callable[[Message], Awaitable[None]], last: Message) -> None:
        """Send the answer's `last` body message; when the body is not whole yet, the
        answer's bytes go first, then the body is discarded (bounded), then the answer ends.

        The end of the answer is shielded (hypercorn starts the connection's idle timer in
        it; the socket write is bounded by TCP_USER_TIMEOUT); while it is sent, what the
        client still sends keeps being dropped, because hypercorn queues its disconnect
        message behind it and would wait for room forever.
        """
        if not self.complete.is_set():
            await send({**last, "more_body": True})
            await self._discard()
            last = {"type": "http.response.body", "body": b"", "more_body": False}
        with trio.CancelScope(shield=True):
            if self.complete.is_set():
                await send(last)
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._drop, float("inf"))
                await send(last)
                nursery.cancel_scope.cancel()

    async def _discard(self) -> None:
        if self._declared_bytes is not None and self._declared_bytes > DISCARD_MAX_BYTES:
            return  # too much to read: the connection is closed under it
        with trio.move_on_after(DISCARD_S):
            async with trio.open_nursery() as nursery:

                async def drop_then_stop() -> None:
                    await self._drop(DISCARD_MAX_BYTES)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(drop_then_stop)
                # The app may be receiving too (quart reads bodies as they come): whichever
                # receives the last message sets `complete`.
                await self.complete.wait()
                nursery.cancel_scope.cancel()

    async def _drop(self, max_bytes: float) -> None:
        """Receive and drop body messages until the body is whole or `max_bytes` are gone."""
        dropped = 0
        while dropped <= max_bytes and not self.complete.is_set():
            dropped += len((await self.receive()).get("body", b""))
