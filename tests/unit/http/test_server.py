"""Listening sockets: a client that stops reading is dropped by the kernel (TCP_USER_TIMEOUT,
inherited by accepted connections), so it cannot hold a blocked write, or the shutdown,
forever. And the hypercorn internals http/server.py builds on."""

from __future__ import annotations

import socket

import pytest

from lumiku.http.server import make_sockets

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux-only"
)


def test_accepted_connections_inherit_the_send_stall_timeout() -> None:
    (listener,) = make_sockets(["127.0.0.1:0"], reuse_port=False, send_stall_timeout_s=1.5)
    with listener, socket.create_connection(listener.getsockname()) as _client:
        listener.setblocking(True)
        accepted, _address = listener.accept()
        with accepted:
            timeout_ms = accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
    assert timeout_ms == 1500


def test_without_a_timeout_the_kernel_default_stays() -> None:
    (listener,) = make_sockets(["127.0.0.1:0"], reuse_port=False)
    with listener:
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 0


def test_the_hypercorn_methods_overridden_still_exist() -> None:
    """http/server.py replaces these private methods of hypercorn's; an upgrade that renames
    or drops one would silently undo the drain and refusal fixes."""
    from hypercorn.protocol.h11 import H11Protocol
    from hypercorn.trio.tcp_server import TCPServer

    for cls, names in (
        (TCPServer, ("run", "_idle_timeout", "_close", "_read_data", "_initiate_server_close")),
        (H11Protocol, ("_send_error_response", "_maybe_recycle", "_close_stream")),
    ):
        for name in names:
            assert callable(getattr(cls, name, None)), f"{cls.__name__}.{name}"
