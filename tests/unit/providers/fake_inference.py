"""A real HTTP/1.1 server on a loopback port that plays an Inference API from a script.

Each request is recorded (method, path, headers, body) and answered with the next scripted
`Reply` (the last one repeats); `Reply(hang=True)` never answers. One request per
connection (`Connection: close`), which httpx handles like any server.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import attrs
import trio


@attrs.frozen
class Reply:
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    hang: bool = False

    @classmethod
    def json(cls, status: int, payload: Any, *headers: tuple[str, str]) -> Reply:
        content = (("Content-Type", "application/json"), *headers)
        return cls(status, json.dumps(payload).encode(), content)

    @classmethod
    def image(cls, data: bytes, kind: str = "image/png") -> Reply:
        return cls(200, data, (("Content-Type", kind),))


@attrs.frozen
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


_REASONS = {200: "OK", 400: "Bad Request", 429: "Too Many Requests", 503: "Service Unavailable"}


@attrs.define
class FakeInference:
    replies: list[Reply] = attrs.field(factory=list)
    requests: list[Recorded] = attrs.field(factory=list)
    arrived: trio.Event = attrs.field(factory=trio.Event)
    port: int = 0

    async def start(self, nursery: trio.Nursery) -> str:
        """Serve in `nursery` on a free loopback port; return the base URL."""
        listeners = await nursery.start(partial(trio.serve_tcp, self._handle, 0, host="127.0.0.1"))
        self.port = listeners[0].socket.getsockname()[1]
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        self.replies[:] = replies

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            while len(body) < length:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    return
                body += chunk
            self.requests.append(Recorded(method, path, headers, body))
            self.arrived.set()
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            if reply.hang:
                await trio.sleep_forever()
            status_line = f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}\r\n"
            extra = "".join(f"{name}: {value}\r\n" for name, value in reply.headers)
            response = (
                f"{status_line}{extra}Content-Length: {len(reply.body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1") + reply.body
            await stream.send_all(response)
