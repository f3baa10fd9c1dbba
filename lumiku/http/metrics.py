"""`GET /metrics` (SPEC §13.3): this instance's Prometheus series, where and to whom.

- `metrics.bind` set: served ONLY on that (internal) address, by a second hypercorn
  listener the supervisor starts with `listener_app`; the main app's `/metrics` is 404.
- otherwise: served on the main app, answered by the edge middleware (`endpoints`) without
  entering quart.
- `metrics.token` set: wherever it is served, `Authorization: Bearer <token>` is required
  (compared in constant time); missing or wrong → 401 `UNAUTHORIZED` problem+json with
  `WWW-Authenticate: Bearer`. Neither set (development): open.

200 carries the text exposition (`text/plain; version=0.0.4`); methods other than GET and
HEAD get 405. Not rate limited (scrapers poll on a schedule); counted in the request
metrics like any route (`route="/metrics"`).
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING, Final

from lumiku.http.middleware import EdgeMiddleware, send_problem
from lumiku.observability.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from lumiku.config import Settings
    from lumiku.deps import Deps
    from lumiku.http.middleware import ASGIApp, Receive, Scope, Send
    from lumiku.observability.metrics import Metrics

PATH: Final = "/metrics"


class MetricsEndpoint:
    """The ASGI endpoint behind `GET /metrics`; see the module docstring."""

    def __init__(self, metrics: Metrics, token: str) -> None:
        self.metrics = metrics
        self._token = token.encode()

    def authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        """Whether `headers` carry the configured bearer token (always, with none set)."""
        if not self._token:
            return True
        for name, value in headers:
            if name == b"authorization":
                scheme, _, given = value.partition(b" ")
                return scheme.lower() == b"bearer" and hmac.compare_digest(
                    given.strip(), self._token
                )
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await send_problem(
                send,
                405,
                "METHOD_NOT_ALLOWED",
                "Method not allowed",
                f"{method} is not allowed here.",
                [(b"allow", b"GET, HEAD")],
            )
            return
        if not self.authorized(scope["headers"]):
            await send_problem(
                send,
                401,
                "UNAUTHORIZED",
                "Authentication required",
                "The metrics want the bearer token configured as metrics.token.",
                [(b"www-authenticate", b"Bearer")],
            )
            return
        body = self.metrics.render()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", CONTENT_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


def endpoints(deps: Deps) -> dict[str, ASGIApp]:
    """What the main app's edge serves itself: `/metrics`, unless it has its own listener."""
    if deps.settings.metrics.bind:
        return {}
    return {PATH: MetricsEndpoint(deps.metrics, deps.settings.metrics.token)}


def listener_app(deps: Deps) -> ASGIApp:
    """The whole app of the `metrics.bind` listener: `/metrics`, and 404 for anything else
    (behind the same edge: request ids, security headers, access lines)."""
    settings: Settings = deps.settings
    endpoint = MetricsEndpoint(deps.metrics, settings.metrics.token)
    return EdgeMiddleware(_nothing_else, settings, endpoints={PATH: endpoint})


async def _nothing_else(scope: Scope, receive: Receive, send: Send) -> None:
    """404 for every other HTTP request, 403 for websockets; ASGI lifespan acknowledged."""
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    elif kind == "websocket":
        await send({"type": "websocket.close", "code": 1008})
    else:
        await send_problem(send, 404, "NOT_FOUND", "Not found", "Only /metrics is served here.")
