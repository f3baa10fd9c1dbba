"""A minimal websocket client for tests, on wsproto over a trio stream.

Unlike trio-websocket it always closes its TCP stream when the connection ends, whichever
side closed first, so leak checks stay meaningful; it also exposes the close code. A test
can shrink the client's kernel receive buffer (`receive_buffer_bytes`) to play a client
that stops reading without the kernel absorbing some 200 KiB for it first.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import attrs
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)


class Closed(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"websocket closed: {code} {reason}")
        self.code = code
        self.reason = reason


@attrs.define
class WsClient:
    stream: trio.SocketStream
    ws: WSConnection
    pending: list[Event] = attrs.field(factory=list)
    closed: Closed | None = None

    async def _events(self) -> None:
        while not self.pending:
            data = await self.stream.receive_some(65536)
            self.ws.receive_data(data or None)
            for event in self.ws.events():
                if isinstance(event, Ping):
                    await self.stream.send_all(self.ws.send(event.response()))
                else:
                    self.pending.append(event)

    async def receive(self) -> str:
        """The next text message; raises `Closed` when the server closes the connection."""
        buffer = ""
        while True:
            if self.closed is not None:
                raise self.closed
            await self._events()
            event = self.pending.pop(0)
            if isinstance(event, CloseConnection):
                self.closed = Closed(event.code, event.reason)
                with contextlib.suppress(Exception):
                    await self.stream.send_all(self.ws.send(event.response()))
                raise self.closed
            if isinstance(event, TextMessage):
                buffer += event.data
                if event.message_finished:
                    return buffer
            elif isinstance(event, Message):
                raise AssertionError(f"unexpected frame {event!r}")

    async def send(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=text)))


async def _open_stream(host: str, port: int, receive_buffer_bytes: int | None) -> trio.SocketStream:
    if receive_buffer_bytes is None:
        return await trio.open_tcp_stream(host, port)
    # SO_RCVBUF must be set before connecting: the window scale is agreed in the handshake.
    family, kind, proto, _, address = (
        await trio.socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    )[0]
    sock = trio.socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer_bytes)
        await sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


@contextlib.asynccontextmanager
async def connect(
    url: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    receive_buffer_bytes: int | None = None,
) -> AsyncIterator[WsClient]:
    """Open a websocket to `url` (ws://host:port/path?query); always closes the stream.
    `receive_buffer_bytes` sets the socket's SO_RCVBUF (the kernel doubles it)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    stream = await _open_stream(parts.hostname, parts.port, receive_buffer_bytes)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        request = Request(
            host=f"{parts.hostname}:{parts.port}", target=target, extra_headers=headers or []
        )
        await stream.send_all(ws.send(request))
        client = WsClient(stream, ws)
        await client._events()
        answer = client.pending.pop(0)
        if isinstance(answer, RejectConnection):
            raise Closed(answer.status_code, "rejected")
        assert isinstance(answer, AcceptConnection), answer
        yield client
        if client.closed is None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.send_all(ws.send(CloseConnection(code=1000)))
