from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from lumiku.config import SystemdEnv
from lumiku.shutdown import ShutdownState
from lumiku.systemd import Beacon, Notifier, listen_fd_binds, serve_watchdog, watchdog_interval_s


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify"))
    sock.setblocking(False)
    yield sock
    sock.close()


def drain(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_notifier_sends_datagrams(notify_socket: socket.socket) -> None:
    notifier = Notifier(notify_socket.getsockname())
    assert notifier.ready("serving on http://127.0.0.1:1")
    assert notifier.stopping()
    assert notifier.extend_timeout(2.5)
    messages = drain(notify_socket)
    assert messages[0].split("\n")[:2] == ["READY=1", "STATUS=serving on http://127.0.0.1:1"]
    assert messages[1].startswith("STOPPING=1")
    assert messages[2] == "EXTEND_TIMEOUT_USEC=2500000"


def test_notifier_without_socket_is_a_no_op() -> None:
    assert not Notifier("").ready("x")


def test_notifier_survives_a_missing_socket(tmp_path: Path) -> None:
    assert not Notifier(str(tmp_path / "gone")).watchdog()


def test_abstract_socket_address() -> None:
    name = f"lumiku-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier("@" + name).watchdog()
        assert sock.recv(100) == b"WATCHDOG=1"


def test_watchdog_interval_is_half_of_watchdog_usec() -> None:
    assert watchdog_interval_s(SystemdEnv(watchdog_usec=30_000_000)) == 15.0
    assert watchdog_interval_s(SystemdEnv()) is None
    assert watchdog_interval_s(SystemdEnv(watchdog_usec=10, watchdog_pid=os.getpid() + 1)) is None


def test_watchdog_pid_of_the_bootloader_counts_only_in_the_one_file_executable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # systemd names the process it started; in the PyInstaller executable that is our parent.
    parent = SystemdEnv(watchdog_usec=30_000_000, watchdog_pid=os.getppid())
    assert watchdog_interval_s(parent) is None
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert watchdog_interval_s(parent) == 15.0
    assert watchdog_interval_s(SystemdEnv(watchdog_usec=10, watchdog_pid=os.getpid())) is not None
    other = max(os.getpid(), os.getppid()) + 1
    assert watchdog_interval_s(SystemdEnv(watchdog_usec=10, watchdog_pid=other)) is None


def test_listen_fds_only_for_this_process() -> None:
    mine = SystemdEnv(listen_fds=2, listen_pid=os.getpid())
    assert listen_fd_binds(mine) == ["fd://3", "fd://4"]
    assert listen_fd_binds(SystemdEnv(listen_fds=2, listen_pid=os.getpid() + 1)) == []
    assert listen_fd_binds(SystemdEnv()) == []


async def test_watchdog_pings_only_while_every_beacon_moves(
    notify_socket: socket.socket, autojump_clock: trio.testing.MockClock
) -> None:
    worker = Beacon("worker")
    state = ShutdownState()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            serve_watchdog, Notifier(notify_socket.getsockname()), 1.0, [worker], state, 10.0
        )

        async def beat_for(seconds: float) -> None:
            end = trio.current_time() + seconds
            while trio.current_time() < end:
                worker.beat()
                await trio.sleep(0.1)

        await beat_for(5)
        healthy = drain(notify_socket).count("WATCHDOG=1")
        assert healthy >= 4
        await trio.sleep(5)  # the worker loop is stuck: no beats
        assert drain(notify_socket).count("WATCHDOG=1") <= 1  # at most the ping already due
        await beat_for(3)
        assert drain(notify_socket).count("WATCHDOG=1") >= 2  # resumed
        nursery.cancel_scope.cancel()


async def test_watchdog_stops_while_the_event_loop_is_blocked(notify_socket: socket.socket) -> None:
    received: list[float] = []
    blocked: list[float] = []

    async def collect() -> None:
        while True:
            await trio.lowlevel.wait_readable(notify_socket)
            for message in drain(notify_socket):
                if message == "WATCHDOG=1":
                    received.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(collect)
        await nursery.start(
            serve_watchdog, Notifier(notify_socket.getsockname()), 0.05, [], ShutdownState(), 1.0
        )
        await trio.sleep(0.3)
        before = len(received)
        assert before >= 3
        blocked.append(trio.current_time())
        import time

        time.sleep(0.5)  # block the event loop itself, as a stuck handler would
        blocked.append(trio.current_time())
        await trio.sleep(0.3)
        nursery.cancel_scope.cancel()
    start, end = blocked
    # No ping was sent while the loop was blocked (a ping sent during the block would be
    # received at or before `end`, since the collector could not run either).
    sent_during = [t for t in received if start < t < end]
    assert sent_during == []
    assert len(received) > before  # and pings resumed once the loop ran again


async def test_draining_sends_extend_timeout(
    notify_socket: socket.socket, autojump_clock: trio.testing.MockClock
) -> None:
    state = ShutdownState()
    async with trio.open_nursery() as nursery:
        await nursery.start(
            serve_watchdog, Notifier(notify_socket.getsockname()), None, [], state, 20.0
        )
        await trio.sleep(1)
        assert drain(notify_socket) == []
        state.request("test")
        await trio.sleep(6)
        extends = [m for m in drain(notify_socket) if m.startswith("EXTEND_TIMEOUT_USEC=")]
        assert len(extends) >= 2
        first, second = (int(m.split("=")[1]) for m in extends[:2])
        assert first == 30_000_000  # grace + 5 s of budget, plus 5 s of slack
        assert second < first  # the budget shrinks as the drain goes on
        nursery.cancel_scope.cancel()


async def test_status_line_is_sent_periodically_until_draining(
    notify_socket: socket.socket, autojump_clock: trio.testing.MockClock
) -> None:
    state = ShutdownState()
    calls: list[float] = []

    def status() -> str:
        calls.append(trio.current_time())
        return f"serving; call {len(calls)}"

    async with trio.open_nursery() as nursery:
        notifier = Notifier(notify_socket.getsockname())
        await nursery.start(serve_watchdog, notifier, None, [], state, 5.0, status)
        await trio.sleep(25)
        assert drain(notify_socket) == ["STATUS=serving; call 1", "STATUS=serving; call 2"]
        state.request("test")
        await trio.sleep(20)
        assert not [m for m in drain(notify_socket) if m.startswith("STATUS=")]
        nursery.cancel_scope.cancel()


async def test_status_is_not_computed_without_systemd(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(
            serve_watchdog,
            Notifier(""),
            None,
            [],
            ShutdownState(),
            5.0,
            lambda: str(calls.append(1)),
        )
        await trio.sleep(60)
        nursery.cancel_scope.cancel()
    assert calls == []
