"""A real HTTP/1.1 server on a loopback port that plays an Inference API from a script.

Each request is recorded (method, path, headers, body, arrival time on trio's clock) and
answered with the next scripted `Reply` (the last one repeats), or by `respond(recorded)`
when set (replies that depend on the request, e.g. on the pose its prompt names);
`Reply(hang=True)` never answers and `Reply(delay_s=…)` answers after a pause. One request per
connection (`Connection: close`), which httpx handles like any server.
"""

from __future__ import annotations

import json
from collections.abc import Callable
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
    delay_s: float = 0.0

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
    at: float = 0.0  # trio.current_time() when the request had fully arrived

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def inputs(self) -> str:
        """The prompt (`inputs`) of a JSON request body; "" when there is none."""
        try:
            body = self.json()
        except ValueError:
            return ""
        return str(body.get("inputs", "")) if isinstance(body, dict) else ""


_REASONS = {
    200: "OK",
    400: "Bad Request",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


@attrs.define
class FakeInference:
    replies: list[Reply] = attrs.field(factory=list)
    requests: list[Recorded] = attrs.field(factory=list)
    arrived: trio.Event = attrs.field(factory=trio.Event)
    port: int = 0
    respond: Callable[[Recorded], Reply] | None = None
    answered: list[Recorded] = attrs.field(factory=list)  # requests whose reply was sent

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
            recorded = Recorded(method, path, headers, body, trio.current_time())
            self.requests.append(recorded)
            self.arrived.set()
            if self.respond is not None:
                reply = self.respond(recorded)
            else:
                reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            if reply.hang:
                await trio.sleep_forever()
            if reply.delay_s:
                await trio.sleep(reply.delay_s)
            status_line = f"HTTP/1.1 {reply.status} {_REASONS.get(reply.status, 'Status')}\r\n"
            extra = "".join(f"{name}: {value}\r\n" for name, value in reply.headers)
            response = (
                f"{status_line}{extra}Content-Length: {len(reply.body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("latin-1") + reply.body
            await stream.send_all(response)
            self.answered.append(recorded)
