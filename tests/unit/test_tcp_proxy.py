"""The tests' TcpProxy: reset mode (`take_down`) and drop mode (`drop`), and the restore."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import attrs
import pytest
import trio
import trio.testing

from lumiku.testing import TcpProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@attrs.define
class EchoServer:
    """Echoes every byte back; records what it saw."""

    connections: int = 0
    received: bytearray = attrs.field(factory=bytearray)
    closed: int = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        async with stream:
            async for chunk in stream:
                self.received += chunk
                await stream.send_all(chunk)
        self.closed += 1


@pytest.fixture
async def proxied() -> AsyncIterator[tuple[EchoServer, TcpProxy]]:
    server = EchoServer()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, server.handle, 0, host="127.0.0.1")
            )
            proxy = TcpProxy("127.0.0.1", listeners[0].socket.getsockname()[1])
            await nursery.start(proxy.serve)
            yield server, proxy
            nursery.cancel_scope.cancel()


async def connect(proxy: TcpProxy) -> trio.SocketStream:
    return await trio.open_tcp_stream("127.0.0.1", proxy.port)


async def round_trip(stream: trio.SocketStream, data: bytes) -> bytes:
    await stream.send_all(data)
    received = b""
    while len(received) < len(data):
        chunk = await stream.receive_some()
        assert chunk, "the connection closed"
        received += chunk
    return received


async def test_forwards_both_ways(proxied: tuple[EchoServer, TcpProxy]) -> None:
    server, proxy = proxied
    async with await connect(proxy) as stream:
        assert await round_trip(stream, b"hello") == b"hello"
    assert server.received == b"hello"


async def test_drop_holds_every_byte_and_keeps_connections_open(
    proxied: tuple[EchoServer, TcpProxy],
) -> None:
    server, proxy = proxied
    replies: list[bytes] = []

    async def read_one(stream: trio.SocketStream) -> None:
        replies.append(await stream.receive_some())

    async with await connect(proxy) as old, trio.open_nursery() as nursery:
        assert await round_trip(old, b"before") == b"before"
        proxy.drop()
        assert proxy.dropping
        nursery.start_soon(read_one, old)
        await old.send_all(b"during")
        # A new connection is accepted (no refusal, no reset) but reaches nothing.
        new = await connect(proxy)
        await new.send_all(b"new")
        await trio.testing.wait_all_tasks_blocked()
        assert replies == []
        assert server.received == b"before"
        assert server.connections == 1

        proxy.bring_up()
        assert not proxy.dropping
        # The old connection resumes with what was held; the new one reaches the target.
        with trio.fail_after(5):
            while not replies:
                await trio.sleep(0)
                await trio.testing.wait_all_tasks_blocked()
        assert replies == [b"during"]
        async with new:
            assert await new.receive_some() == b"new"
            assert await round_trip(new, b"again") == b"again"
        assert server.connections == 2


async def test_without_a_drop_the_same_bytes_arrive(proxied: tuple[EchoServer, TcpProxy]) -> None:
    """The control of the test above: the same wait sees the bytes when nothing is dropped."""
    server, proxy = proxied
    async with await connect(proxy) as stream:
        await stream.send_all(b"during")
        await trio.testing.wait_all_tasks_blocked()
        assert server.received == b"during"


async def test_a_client_that_gave_up_during_a_drop_is_closed_upstream_on_restore(
    proxied: tuple[EchoServer, TcpProxy],
) -> None:
    server, proxy = proxied
    stream = await connect(proxy)
    assert await round_trip(stream, b"x") == b"x"
    proxy.drop()
    await stream.aclose()
    await trio.testing.wait_all_tasks_blocked()
    assert server.closed == 0  # the target knows nothing during the drop
    proxy.bring_up()
    with trio.fail_after(5):
        while server.closed == 0:
            await trio.sleep(0)
            await trio.testing.wait_all_tasks_blocked()


async def test_take_down_closes_connections_and_refuses_new_ones(
    proxied: tuple[EchoServer, TcpProxy],
) -> None:
    _server, proxy = proxied
    async with await connect(proxy) as stream:
        assert await round_trip(stream, b"x") == b"x"
        proxy.take_down()
        with trio.fail_after(5):
            assert await stream.receive_some() == b""
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(OSError, match="all attempts to connect"):
        await connect(proxy)
    proxy.bring_up()
    with trio.fail_after(5):
        while True:
            try:
                stream = await connect(proxy)
            except OSError:
                await trio.sleep(0)
                continue
            break
    async with stream:
        assert await round_trip(stream, b"back") == b"back"


async def test_bring_up_restores_a_drop_turned_into_a_reset(
    proxied: tuple[EchoServer, TcpProxy],
) -> None:
    _server, proxy = proxied
    proxy.drop()
    proxy.take_down()
    proxy.bring_up()
    with trio.fail_after(5):
        while True:
            try:
                stream = await connect(proxy)
            except OSError:
                await trio.sleep(0)
                continue
            break
    async with stream:
        assert await round_trip(stream, b"ok") == b"ok"
