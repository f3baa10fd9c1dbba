"""`serve_http`: hypercorn's trio worker, called programmatically, on our own sockets.

hypercorn's `worker_serve` loop is reproduced here (it is short) so that the drain can keep
the listeners open for `shutdown.readiness_delay_s` and so that connections are handled by
`_Connection`, hypercorn's `TCPServer` with three changes:

- A drain answers what kept-alive clients have already sent. hypercorn closes every idle
  connection the moment the listeners close, and every connection after its answer from
  then on, but a client that has just read an answer that said nothing of a close (its
  head went out before the drain began) may be sending its next request on it right then,
  and would get a reset for a request the server had received. Such a connection is kept,
  and closed once it has been idle DRAIN_IDLE_S; a request arriving before that is
  answered (with `Connection: close`, which the edge adds to every response while
  draining).
- The server's own refusals of unparsable requests (431 when the request line and headers
  exceed MAX_HEADER_BYTES before they are complete, 400 when malformed) are problem+json
  like every other error, with a request id, and logged (`http.refused`); hypercorn's are
  bare. (Complete heads over the limit are refused by the edge, with the same problem.)
- Closing a connection after a refusal while the client is still sending half-closes it
  and reads and discards up to LINGER_MAX_BYTES for up to LINGER_S first (RFC 9112 §9.6):
  a socket closed with unread data resets the connection, and the reset can destroy the
  answer before the client reads it. (Answers of the app sent before a body was read
  discard it at the edge first: `lumiku.http.unread`.)

These override private methods of hypercorn 0.18 (pinned in the lock file): on an upgrade,
compare them with `hypercorn/trio/tcp_server.py` and `hypercorn/protocol/h11.py`;
tests/unit/http/test_server.py fails when the methods they replace are gone.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
from functools import partial
from http import HTTPStatus
from typing import TYPE_CHECKING, Final

import h11
import trio
from hypercorn.config import Config
from hypercorn.events import Closed, Updated
from hypercorn.protocol import ProtocolWrapper
from hypercorn.protocol.h11 import H11Protocol
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.task_group import TaskGroup
from hypercorn.trio.tcp_server import MAX_RECV, TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import ConnectionState
from hypercorn.utils import parse_socket_addr, repr_socket_addr, wrap_app

from lumiku.config_rules import split_bind
from lumiku.http.middleware import MAX_HEADER_BYTES
from lumiku.http.problems import PROBLEM_JSON, problem_body
from lumiku.observability.logging import get_logger, request_id_var

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from lumiku.config import HttpSettings
    from lumiku.http.middleware import ASGIApp
    from lumiku.shutdown import ShutdownState

log = get_logger("lumiku.http.server")

BACKLOG: Final = 1024
WS_MAX_MESSAGE_BYTES: Final = 64 * 1024
DRAIN_IDLE_S: Final = 0.25  # see the module docstring; well under http.keep_alive_s
LINGER_S: Final = 10.0
LINGER_MAX_BYTES: Final = 16 * 1024 * 1024
REFUSAL_CODES: Final = {400: "BAD_REQUEST", 431: "REQUEST_HEADERS_TOO_LARGE"}
ACCEPT_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})
ACCEPT_RETRY_S: Final = 0.1


def make_sockets(
    binds: list[str], reuse_port: bool, send_stall_timeout_s: float | None = None
) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for `binds` (`host:port` or `fd://N`).

    With `send_stall_timeout_s`, TCP sockets get TCP_USER_TIMEOUT (Linux; accepted
    connections inherit it): hypercorn shields its socket writes from cancellation, so a
    client that stops reading would hold its connection, and the shutdown, forever; the
    kernel drops it instead once sent data stays unacknowledged that long."""
    sockets: list[socket.socket] = []
    for bind in binds:
        if bind.startswith("fd://"):
            sock = socket.socket(fileno=int(bind[5:]))
        else:
            host, port = split_bind(bind)
            sock = socket.socket(
                socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM
            )
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if reuse_port:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.bind((host, port))
            except OSError:  # a port in use…: close what was made, not left to the GC
                for made in (*sockets, sock):
                    made.close()
                raise
        if (
            send_stall_timeout_s is not None
            and hasattr(socket, "TCP_USER_TIMEOUT")
            and sock.family in (socket.AF_INET, socket.AF_INET6)
        ):
            milliseconds = max(1, round(send_stall_timeout_s * 1000))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)
        sock.setblocking(False)
        sock.listen(BACKLOG)
        sockets.append(sock)
    return sockets


def hypercorn_config(http: HttpSettings, grace_s: float) -> Config:
    config = Config()
    config.graceful_timeout = grace_s
    config.keep_alive_timeout = http.keep_alive_s
    config.h11_max_incomplete_size = MAX_HEADER_BYTES
    # hypercorn's own ping loop outlives a closed websocket by up to one interval (it checks
    # `closed` only after sleeping), which would hold every drain for the full grace; the
    # websocket handler sends the pings instead (http/ws.py).
    config.websocket_ping_interval = None
    config.websocket_max_message_size = WS_MAX_MESSAGE_BYTES
    config.include_server_header = False
    config.accesslog = None  # EdgeMiddleware writes the access line
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


class _ProblemH11(H11Protocol):
    """hypercorn's HTTP/1.1 protocol, refusing unparsable requests with a problem, and
    keeping a connection for its next request after an answer that did not say it closes,
    even while draining (see the module docstring)."""

    async def _maybe_recycle(self) -> None:
        # H11Protocol._maybe_recycle, but recycling also once the drain has begun: an answer
        # whose head went out before it (so without `Connection: close`) invites the client
        # to send its next request here; the idle timer closes the connection when none
        # comes within DRAIN_IDLE_S.
        await self._close_stream()
        connection = self.connection
        if connection.our_state is h11.DONE and connection.their_state is h11.DONE:
            try:
                connection.start_next_cycle()
            except h11.LocalProtocolError:
                await self.send(Closed())
            else:
                await self.can_read.set()
                await self.send(Updated(idle=True))
        else:
            await self.can_read.set()
            await self.send(Closed())

    async def _send_error_response(self, status_code: int) -> None:
        request_id = f"{random.getrandbits(128):032x}"
        token = request_id_var.set(request_id)
        try:
            code = REFUSAL_CODES.get(status_code, "HTTP_ERROR")
            phrase = HTTPStatus(status_code).phrase
            detail = (
                f"The request line and headers may be at most {MAX_HEADER_BYTES} bytes."
                if status_code == 431
                else "The request is not valid HTTP/1.1."
            )
            body = problem_body(status_code, code, phrase, detail)
            log.info("http.refused", status=status_code, client_ip=(self.client or ("",))[0])
        finally:
            request_id_var.reset(token)
        headers = [
            (b"content-type", PROBLEM_JSON.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"x-request-id", request_id.encode()),
            (b"x-content-type-options", b"nosniff"),
            *self.config.response_headers("h11"),
        ]
        await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())


class _Connection(TCPServer):
    """One accepted connection: hypercorn's `TCPServer` (plain TCP, no TLS) with the
    changes the module docstring lists."""

    _reader: trio.lowlevel.Task | None = None

    async def run(self) -> None:
        # TCPServer.run without its TLS branch, speaking through `_ProblemH11`.
        self._reader = trio.lowlevel.current_task()
        sock = self.stream.socket
        try:
            client = parse_socket_addr(sock.family, sock.getpeername())
            server = parse_socket_addr(sock.family, sock.getsockname())
            async with TaskGroup() as task_group:
                self._task_group = task_group
                state = ConnectionState(self.state)
                self.protocol = ProtocolWrapper(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    state,
                    False,
                    client,
                    server,
                    self.protocol_send,
                    "http/1.1",
                )
                self.protocol.protocol = _ProblemH11(
                    self.app,
                    self.config,
                    self.context,
                    task_group,
                    state,
                    False,
                    client,
                    server,
                    self.protocol_send,
                )
                await self.protocol.initiate()
                await self.idle_task.restart(self._task_group, self._idle_timeout)
                await self._read_data()
        except OSError:
            pass
        finally:
            await self._close()

    async def _idle_timeout(self) -> None:
        idle_since = trio.current_time()
        with trio.move_on_after(self.config.keep_alive_timeout):
            await self.context.terminated.wait()
            await trio.sleep_until(idle_since + DRAIN_IDLE_S)
        with trio.CancelScope(shield=True):
            await self._initiate_server_close()

    async def _close(self) -> None:
        # Only the task reading the connection may read it: closes from an answer being
        # sent (the app's task) cannot linger, which is why the edge reads unread bodies.
        if trio.lowlevel.current_task() is self._reader and self._client_sending():
            await self._linger()
        await super()._close()

    def _client_sending(self) -> bool:
        """Whether the client may still be sending: in a request's body, or in a request
        the server refused as unparsable (h11's ERROR state)."""
        wrapper: ProtocolWrapper | None = getattr(self, "protocol", None)
        protocol = wrapper.protocol if wrapper is not None else None
        return (
            isinstance(protocol, H11Protocol)
            and isinstance(protocol.connection, h11.Connection)
            and protocol.connection.their_state in (h11.SEND_BODY, h11.ERROR)
        )

    async def _linger(self) -> None:
        """Half-close, then discard what the client still sends until it closes (bounded)."""
        try:
            await self.stream.send_eof()
            with trio.move_on_after(LINGER_S):
                discarded = 0
                while discarded < LINGER_MAX_BYTES:
                    data = await self.stream.receive_some(MAX_RECV)
                    if not data:
                        return
                    discarded += len(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.BusyResourceError):
            pass


async def _run_connection(
    handler: Callable[[trio.SocketStream], Awaitable[None]], stream: trio.SocketStream
) -> None:
    try:
        await handler(stream)
    finally:
        await trio.aclose_forcefully(stream)


async def _serve_listener(
    sock: socket.socket,
    handler: Callable[[trio.SocketStream], Awaitable[None]],
    connections: trio.Nursery,
) -> None:
    """Accept connections on `sock` into `connections` until cancelled, then close it.

    As trio.serve_listeners (capacity errors are logged and retried), and on the way out the
    connections the kernel has completed meanwhile are taken from the backlog and served
    too: their clients may have sent a request already, and closing the listener would
    reset them."""
    listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
    async with listener:
        try:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                        raise
                    log.error("http.accept_failed", error=errno.errorcode[exc.errno])
                    await trio.sleep(ACCEPT_RETRY_S)
                else:
                    connections.start_soon(_run_connection, handler, stream)
        finally:
            while True:  # no checkpoint in here: this runs while cancelled
                try:
                    accepted, _ = sock.accept()
                except OSError:  # BlockingIOError: the backlog is empty
                    break
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(accepted))
                connections.start_soon(_run_connection, handler, stream)


async def serve_http(
    app: ASGIApp,
    http: HttpSettings,
    binds: list[str],
    shutdown: ShutdownState,
    grace_s: float,
    *,
    readiness_delay_s: float = 0.0,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until `shutdown.requested`, then drain and return.

    `task_status.started` receives the bound addresses once the sockets accept connections.
    On shutdown, for `readiness_delay_s` the listeners stay open while readiness says
    `draining` and every response says `Connection: close` (load balancers take the
    instance out); then the listeners close (new connections are refused; those already
    in the backlog are served),
    `shutdown.closing` is set (websockets and SSE streams end), idle connections close
    (see the module docstring) and requests in flight get what is left of `grace_s`,
    counted from the request; whatever is left after that is cancelled.
    """
    sockets = make_sockets(binds, http.reuse_port, http.send_stall_timeout_s)
    config = hypercorn_config(http, grace_s)
    wrapped = wrap_app(app, 0, "asgi")  # type: ignore[arg-type]
    context = WorkerContext(None)
    lifespan_state: dict[str, object] = {}
    lifespan = Lifespan(wrapped, config, lifespan_state)
    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()
        handler = partial(
            _Connection, wrapped, config, context, ConnectionState(lifespan_state.copy())
        )
        async with trio.open_nursery() as connections:
            async with trio.open_nursery() as accepting:
                for sock in sockets:
                    accepting.start_soon(_serve_listener, sock, handler, connections)
                task_status.started(
                    [f"http://{repr_socket_addr(s.family, s.getsockname())}" for s in sockets]
                )
                await shutdown.requested.wait()
                requested_at = shutdown.requested_at or trio.current_time()
                await trio.sleep_until(requested_at + readiness_delay_s)
                accepting.cancel_scope.cancel()  # closes the listeners
            shutdown.closing.set()
            await context.terminated.set()
            connections.cancel_scope.deadline = requested_at + grace_s
        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()
