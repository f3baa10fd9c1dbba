"""A minimal websocket client for the benchmarks, on wsproto over a trio stream.

`read_messages` stamps every text message with the wall-clock time at which the bytes that
completed it came off the socket (one `time.time()` per read, however many messages the
read held), so the stamp does not include parsing or bookkeeping of earlier messages.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable

import attrs
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)


@attrs.define
class WsClient:
    stream: trio.SocketStream
    ws: WSConnection
    received_at: float = 0.0

    async def send(self, text: str) -> None:
        await self.stream.send_all(self.ws.send(TextMessage(data=text)))

    async def read_messages(self, on_message: Callable[[float, str], bool]) -> None:
        """Call `on_message(received_at, text)` for each text message until it returns True
        or the server closes the connection."""
        buffer = ""
        while True:
            # Events first: the handshake's read may have brought the first messages too.
            for event in self.ws.events():
                if isinstance(event, Ping):
                    await self.stream.send_all(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    return
                elif isinstance(event, TextMessage):
                    buffer += event.data
                    if event.message_finished:
                        if on_message(self.received_at, buffer):
                            return
                        buffer = ""
            data = await self.stream.receive_some(65536)
            self.received_at = time.time()
            if not data:
                return
            self.ws.receive_data(data)


@contextlib.asynccontextmanager
async def connect(host: str, port: int, target: str) -> AsyncIterator[WsClient]:
    """A websocket to `ws://host:port/target`; closes the stream on exit."""
    stream = await trio.open_tcp_stream(host, port)
    async with stream:
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(ws.send(Request(host=f"{host}:{port}", target=target)))
        answer = None
        while answer is None:
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("closed during the websocket handshake")
            ws.receive_data(data)
            answer = next(iter(ws.events()), None)
        if isinstance(answer, RejectConnection):
            raise ConnectionError(f"websocket rejected with {answer.status_code}")
        assert isinstance(answer, AcceptConnection), answer
        client = WsClient(stream, ws, time.time())
        yield client
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(ws.send(CloseConnection(code=1000)))
