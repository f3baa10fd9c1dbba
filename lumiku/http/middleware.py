"""The HTTP edge: one ASGI middleware in front of the quart app.

For every request it settles the request id (a valid `X-Request-ID` is kept, anything else
replaced) and the client IP (trusted proxies only), answers CORS preflights, refuses bodies
whose Content-Length exceeds `http.max_body_bytes` (upload routes: `upload_body_limit`,
413 FILE_TOO_LARGE; see http/uploads.py), discards a body still arriving when its answer
ends (http/unread.py: the client can read the answer), adds the security, CORS and
request-id headers to every response (and `Connection: close` while the service drains),
and writes one access line and one request-duration observation
(`HttpSeries`, by route template). It is plain ASGI so the hot path costs a few dictionary
lookups, not a framework round trip.
"""

from __future__ import annotations

import ipaddress
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Final

import trio

from lumiku.http.problems import PROBLEM_JSON, problem_body
from lumiku.http.unread import RequestBody
from lumiku.http.uploads import BODY_LIMIT_SCOPE_KEY, is_upload_path, upload_body_limit
from lumiku.observability.logging import get_logger, request_id_var

if TYPE_CHECKING:
    from lumiku.config import Settings
    from lumiku.observability.metrics import HttpSeries
    from lumiku.shutdown import ShutdownState

log = get_logger("lumiku.http.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
MAX_HEADER_BYTES: Final = 16 * 1024  # the head of a request (hypercorn's limit too)
SECURITY_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
CORS_EXPOSE: Final = (
    b"X-Request-ID, RateLimit-Limit, RateLimit-Remaining, RateLimit-Reset, Retry-After, "
    b"Idempotent-Replayed"
)
CORS_METHODS: Final = b"GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_DEFAULT_HEADERS: Final = b"Authorization, Content-Type, Idempotency-Key, X-Request-ID"
CORS_MAX_AGE_S: Final = 86400


class CorsPolicy:
    """Which origins may call us: exact origins, `https://*.domain` wildcards, or `*`."""

    def __init__(self, origins: Iterable[str]) -> None:
        self.any = False
        self.exact: set[str] = set()
        patterns = []
        for origin in origins:
            origin = origin.lower().rstrip("/")
            if origin == "*":
                self.any = True
            elif "://*." in origin:
                scheme, rest = origin.split("://*.", 1)
                patterns.append(rf"{re.escape(scheme)}://(?:[a-z0-9-]+\.)+{re.escape(rest)}")
            else:
                self.exact.add(origin)
        self._wildcard = re.compile("^(?:" + "|".join(patterns) + ")$") if patterns else None

    def allows(self, origin: str) -> bool:
        origin = origin.lower()
        if self.any or origin in self.exact:
            return True
        return bool(self._wildcard and self._wildcard.match(origin))


class ClientIpResolver:
    """The client IP: the socket peer, or X-Forwarded-For's rightmost untrusted hop when the
    peer is a trusted proxy. No other header is ever believed."""

    def __init__(self, trusted: Iterable[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(c, strict=False) for c in trusted)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self.networks)

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str | None:
        if peer is None or not forwarded_for or not self.networks or not self._trusted(peer):
            return peer
        client = peer
        for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return client  # garbage from an untrusted hop: stop at the last trusted one
            client = hop
            if not self._trusted(hop):
                return hop
        return client


Probe = Callable[[], bytes]


class EdgeMiddleware:
    """ASGI middleware wrapping the quart app; see the module docstring.

    `probes` maps paths to functions returning a JSON body that the edge answers itself,
    without entering quart: the liveness probes, hit every few seconds by every load
    balancer, touch nothing and so should cost nothing beyond the edge itself.
    `endpoints` maps paths to ASGI apps answered the same way (`/metrics`); `metrics`
    receives each request's duration and the websockets' comings and goings.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        probes: dict[str, Probe] | None = None,
        *,
        endpoints: dict[str, ASGIApp] | None = None,
        metrics: HttpSeries | None = None,
        shutdown: ShutdownState | None = None,
    ) -> None:
        self.app = app
        self.shutdown = shutdown
        self.probes = probes or {}
        self.endpoints = endpoints or {}
        self.metrics = metrics
        self.requests_total = 0  # HTTP requests seen; systemd STATUS= reports the rate
        self.cors = CorsPolicy(settings.http.cors_origins)
        self.client_ip = ClientIpResolver(settings.http.trusted_proxies)
        self.max_body_bytes = settings.http.max_body_bytes
        self.upload_max_body_bytes = upload_body_limit(settings)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        origin = incoming_id = forwarded = length = preflight_method = encoding = None
        header_bytes = 0
        for name, value in scope["headers"]:
            header_bytes += len(name) + len(value) + 4  # ": " and CRLF
            if name == b"x-request-id":
                incoming_id = value.decode("latin-1")
            elif name == b"origin":
                origin = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                forwarded = (
                    value.decode("latin-1")
                    if forwarded is None
                    else f"{forwarded},{value.decode('latin-1')}"
                )
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                encoding = value
            elif name == b"access-control-request-method":
                preflight_method = value
        request_id = (
            incoming_id
            if incoming_id and _REQUEST_ID.match(incoming_id)
            else f"{random.getrandbits(128):032x}"  # unique, not secret: no urandom syscall
        )
        client = scope.get("client")
        scope["lumiku.request_id"] = request_id
        scope["lumiku.client_ip"] = self.client_ip.resolve(client[0] if client else None, forwarded)
        token = request_id_var.set(request_id)
        try:
            if kind == "websocket":
                await self._websocket(scope, receive, send)
            else:
                body = (
                    RequestBody(receive, _int_or_none(length))
                    if length not in (None, b"0") or encoding is not None
                    else None
                )
                await self._http(
                    scope,
                    body,
                    receive,
                    send,
                    request_id,
                    origin,
                    length,
                    preflight_method,
                    header_bytes,
                )
        finally:
            request_id_var.reset(token)

    async def _http(
        self,
        scope: Scope,
        body: RequestBody | None,
        receive: Receive,
        send: Send,
        request_id: str,
        origin: str | None,
        length: bytes | None,
        preflight_method: bytes | None,
        header_bytes: int,
    ) -> None:
        started = time.perf_counter()
        if body is not None:
            receive = body.receive
        self.requests_total += 1
        allowed_origin = origin is not None and self.cors.allows(origin)
        extra = [(b"x-request-id", request_id.encode()), *SECURITY_HEADERS]
        if scope["path"].startswith("/api/"):
            extra.append((b"cache-control", b"no-store"))
        if allowed_origin:
            assert origin is not None
            extra += [
                (b"access-control-allow-origin", origin.encode("latin-1")),
                (b"access-control-allow-credentials", b"true"),
                (b"access-control-expose-headers", CORS_EXPOSE),
                (b"vary", b"Origin"),
            ]
        state = {"status": 0, "bytes": 0}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message["headers"] = [*message.get("headers", ()), *extra]
                if (
                    self.shutdown is not None
                    and self.shutdown.draining
                    and scope["http_version"] in ("1.0", "1.1")  # HTTP/2 forbids the header
                ):
                    # The client must not send another request on this connection.
                    _set_connection_close(message["headers"])
            elif message["type"] == "http.response.body":
                state["bytes"] += len(message.get("body", b""))
                if not message.get("more_body", False):
                    if body is not None:  # the body may still be arriving: see http/unread.py
                        await body.finish(send, message)
                        return
                    # hypercorn recycles a keep-alive connection and starts its idle timer
                    # inside this send; quart-trio cancels the request's nursery when the
                    # disconnect that triggers arrives, which would leave the connection
                    # without an idle timer (open past http.keep_alive_s, holding a drain
                    # for the whole grace). The socket write is bounded by TCP_USER_TIMEOUT.
                    with trio.CancelScope(shield=True):
                        await send(message)
                    return
            await send(message)

        try:
            if header_bytes > MAX_HEADER_BYTES:
                # hypercorn refuses longer heads only when they arrive in several reads
                # (http/server.py); this makes the limit the same whatever the timing (to
                # within the request line, which it counts and this does not).
                await send_problem(
                    send_with_headers,
                    431,
                    "REQUEST_HEADERS_TOO_LARGE",
                    "Request Header Fields Too Large",
                    f"The request line and headers may be at most {MAX_HEADER_BYTES} bytes.",
                    [(b"connection", b"close")],
                )
            elif (
                scope["method"] == "OPTIONS" and origin is not None and preflight_method is not None
            ):
                await self._preflight(scope, send_with_headers, allowed_origin)
            elif scope["path"] in self.probes:
                await self._probe(scope, send_with_headers)
            elif scope["path"] in self.endpoints:
                scope["lumiku.route"] = scope["path"]
                await self.endpoints[scope["path"]](scope, receive, send_with_headers)
            elif is_upload_path(scope["method"], scope["path"]):
                await self._upload(scope, receive, send_with_headers, length)
            elif length is not None and _too_long(length, self.max_body_bytes):
                await send_problem(
                    send_with_headers,
                    413,
                    "PAYLOAD_TOO_LARGE",
                    "Request body too large",
                    f"The body may be at most {self.max_body_bytes} bytes.",
                    [(b"connection", b"close")],  # the body is discarded, not read
                )
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            duration_s = time.perf_counter() - started
            route = scope.get("lumiku.route")
            if self.metrics is not None:
                self.metrics.observe(scope["method"], route, state["status"], duration_s)
            log.info(
                "http.access",
                method=scope["method"],
                path=scope["path"],
                route=route,
                status=state["status"],
                duration_ms=round(duration_s * 1000, 2),
                bytes=state["bytes"],
                client_ip=scope["lumiku.client_ip"],
            )

    async def _upload(
        self, scope: Scope, receive: Receive, send: Send, length: bytes | None
    ) -> None:
        """An upload route: the larger limit, by Content-Length here and for quart."""
        limit = self.upload_max_body_bytes
        if length is not None and _too_long(length, limit):
            await send_problem(
                send,
                413,
                "FILE_TOO_LARGE",
                "The uploaded file is too large",
                f"The upload may be at most {limit} bytes, form included.",
                [(b"connection", b"close")],
            )
            return
        scope[BODY_LIMIT_SCOPE_KEY] = limit
        await self.app(scope, receive, send)

    async def _probe(self, scope: Scope, send: Send) -> None:
        scope["lumiku.route"] = scope["path"]
        if scope["method"] not in ("GET", "HEAD"):
            await send_problem(
                send,
                405,
                "METHOD_NOT_ALLOWED",
                "Method not allowed",
                f"{scope['method']} is not allowed here.",
                [(b"allow", b"GET, HEAD")],
            )
            return
        body = self.probes[scope["path"]]()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )

    async def _preflight(self, scope: Scope, send: Send, allowed: bool) -> None:
        headers: list[tuple[bytes, bytes]] = [(b"content-length", b"0")]
        if allowed:
            requested = dict(scope["headers"]).get(b"access-control-request-headers")
            headers += [
                (b"access-control-allow-methods", CORS_METHODS),
                (b"access-control-allow-headers", requested or CORS_DEFAULT_HEADERS),
                (b"access-control-max-age", str(CORS_MAX_AGE_S).encode()),
            ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        state = {"code": None}

        async def watch_send(message: Message) -> None:
            if message["type"] == "websocket.close":
                state["code"] = message.get("code", 1000)
            await send(message)

        if self.metrics is not None:
            self.metrics.websocket_opened()
        try:
            await self.app(scope, receive, watch_send)
        finally:
            if self.metrics is not None:
                self.metrics.websocket_closed()
            log.info(
                "ws.access",
                path=scope["path"],
                close_code=state["code"],
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
                client_ip=scope["lumiku.client_ip"],
            )


def _set_connection_close(headers: list[tuple[bytes, bytes]]) -> None:
    if not any(name.lower() == b"connection" for name, _ in headers):
        headers.append((b"connection", b"close"))


def _int_or_none(length: bytes | None) -> int | None:
    try:
        return int(length) if length is not None else None
    except ValueError:
        return None


def _too_long(length: bytes, limit: int) -> bool:
    try:
        return int(length) > limit
    except ValueError:
        return False


async def send_problem(
    send: Send,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    body = problem_body(status, code, title, detail)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
