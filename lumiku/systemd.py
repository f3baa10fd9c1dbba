"""systemd integration: sd_notify messages, the watchdog and socket activation (SPEC §1).

Everything here is a no-op when systemd did not ask for it (no `NOTIFY_SOCKET`, no
`WATCHDOG_USEC`, no `LISTEN_FDS` naming this process), so the same binary runs anywhere.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import TYPE_CHECKING, Final, NoReturn

import attrs
import trio

from lumiku.observability.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from lumiku.config import SystemdEnv
    from lumiku.shutdown import ShutdownState

log = get_logger(__name__)

SD_LISTEN_FDS_START: Final = 3


@attrs.define
class Notifier:
    """Sends sd_notify datagrams to `NOTIFY_SOCKET`; silently does nothing without one."""

    address: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *lines: str) -> bool:
        """Send `lines` as one datagram; return whether it was delivered."""
        if not self.address:
            return False
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.setblocking(False)
                sock.sendto("\n".join(lines).encode(), address)
        except OSError as exc:
            log.warning("systemd.notify_failed", error=str(exc))
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def stopping(self, status: str = "draining") -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def stopping_now(self) -> None:
        """`stopping()` as a shutdown callback."""
        self.stopping()

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def extend_timeout(self, seconds: float) -> bool:
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")


@attrs.define
class Beacon:
    """A loop that must keep making progress: it calls `beat()` every iteration."""

    name: str
    beats: int = 0

    def beat(self) -> None:
        self.beats += 1


def watchdog_interval_s(env: SystemdEnv) -> float | None:
    """Half the watchdog interval, or None when systemd expects no pings from us."""
    if env.watchdog_usec <= 0 or (env.watchdog_pid and env.watchdog_pid not in started_pids()):
        return None
    return env.watchdog_usec / 2_000_000


def started_pids() -> frozenset[int]:
    """The pids systemd may have started for this process: ours, and under the one-file
    executable also our parent, PyInstaller's bootloader, which runs Python in a child.
    (The bootloader rewrites LISTEN_PID for its child but not WATCHDOG_PID; the child's
    READY=1 carries MAINPID= so systemd then watches the child.)"""
    if getattr(sys, "frozen", False):
        return frozenset({os.getpid(), os.getppid()})
    return frozenset({os.getpid()})


STATUS_INTERVAL_S: Final = 10.0


async def serve_watchdog(
    notifier: Notifier,
    interval_s: float | None,
    beacons: Sequence[Beacon],
    shutdown: ShutdownState,
    grace_s: float,
    status: Callable[[], str] | None = None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Ping `WATCHDOG=1` every `interval_s`, but only while every beacon moved since the last ping.

    The event loop itself is a beacon beaten by a task of its own, so a blocked loop (or a
    stuck worker loop) stops the pings and systemd restarts the service. Once a shutdown is
    requested it also sends `EXTEND_TIMEOUT_USEC` covering the rest of the drain budget.
    With `status`, `STATUS=<status()>` is sent every STATUS_INTERVAL_S while systemd listens.
    Runs until cancelled.
    """
    loop_beacon = Beacon("event_loop")
    watched = (loop_beacon, *beacons)
    async with trio.open_nursery() as nursery:
        if interval_s is not None:
            nursery.start_soon(_beat_forever, loop_beacon, interval_s / 4)
            nursery.start_soon(_ping_forever, notifier, interval_s, watched)
        nursery.start_soon(_extend_while_draining, notifier, shutdown, grace_s)
        if status is not None and notifier.enabled:
            nursery.start_soon(_status_forever, notifier, status, shutdown)
        task_status.started()
    raise AssertionError("watchdog tasks ended")  # pragma: no cover


async def _beat_forever(beacon: Beacon, period_s: float) -> NoReturn:
    while True:
        beacon.beat()
        await trio.sleep(period_s)


async def _ping_forever(
    notifier: Notifier, interval_s: float, beacons: Sequence[Beacon]
) -> NoReturn:
    seen = [-1] * len(beacons)
    while True:
        current = [b.beats for b in beacons]
        stalled = [
            b.name for b, now, before in zip(beacons, current, seen, strict=True) if now == before
        ]
        if stalled:
            log.warning("systemd.watchdog_withheld", stalled=stalled)
        else:
            notifier.watchdog()
        seen = current
        await trio.sleep(interval_s)


async def _status_forever(
    notifier: Notifier, status: Callable[[], str], shutdown: ShutdownState
) -> NoReturn:
    while True:
        await trio.sleep(STATUS_INTERVAL_S)
        if not shutdown.draining:  # STOPPING=1 carries the draining status
            notifier.status(status())


async def _extend_while_draining(
    notifier: Notifier, shutdown: ShutdownState, grace_s: float
) -> NoReturn:
    await shutdown.requested.wait()
    budget_s = grace_s + 5
    deadline = trio.current_time() + budget_s
    while True:
        notifier.extend_timeout(max(deadline - trio.current_time(), 0) + 5)
        await trio.sleep(min(5.0, budget_s))


def listen_fd_binds(env: SystemdEnv) -> list[str]:
    """`fd://3`… for the sockets systemd passed to THIS process (socket activation)."""
    if env.listen_fds <= 0 or env.listen_pid != os.getpid():
        return []
    return [f"fd://{fd}" for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + env.listen_fds)]
