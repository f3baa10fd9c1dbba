"""`serve_http`: hypercorn's trio worker, called programmatically, on our own sockets."""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Final

import trio
from hypercorn.config import Config, Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from lumiku.config_rules import split_bind

if TYPE_CHECKING:
    from lumiku.config import HttpSettings
    from lumiku.http.middleware import ASGIApp
    from lumiku.shutdown import ShutdownState

BACKLOG: Final = 1024
WS_MAX_MESSAGE_BYTES: Final = 64 * 1024


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
    # hypercorn's own ping loop outlives a closed websocket by up to one interval (it checks
    # `closed` only after sleeping), which would hold every drain for the full grace; the
    # websocket handler sends the pings instead (http/ws.py).
    config.websocket_ping_interval = None
    config.websocket_max_message_size = WS_MAX_MESSAGE_BYTES
    config.include_server_header = False
    config.accesslog = None  # EdgeMiddleware writes the access line
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def serve_http(
    app: ASGIApp,
    http: HttpSettings,
    binds: list[str],
    shutdown: ShutdownState,
    grace_s: float,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` until `shutdown.requested`, then drain and return.

    `task_status.started` receives the bound addresses once the sockets accept connections.
    On shutdown the listeners close at once (new connections are refused) and in-flight
    requests get `grace_s` to finish; whatever is left after that is cancelled.
    """
    sockets = make_sockets(binds, http.reuse_port, http.send_stall_timeout_s)
    await worker_serve(
        wrap_app(app, 0, "asgi"),  # type: ignore[arg-type]
        hypercorn_config(http, grace_s),
        sockets=Sockets(secure_sockets=[], insecure_sockets=sockets, quic_sockets=[]),
        shutdown_trigger=shutdown.requested.wait,
        task_status=task_status,
    )
