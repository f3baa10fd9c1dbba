"""Shutdown state and the signal watcher (SPEC §1).

The first SIGTERM/SIGINT sets `ShutdownState.requested`: readiness turns `draining` and
responses say `Connection: close`; `shutdown.readiness_delay_s` later the listeners close
(`ShutdownState.closing`), websockets close with 1001, SSE streams end and the HTTP server
drains (http/server.py). A second one sets
`forced` and cancels the supervisor's root scope at once (exit code 1). SIGHUP is logged
and ignored. A signal that arrives before the service is ready cancels start-up cleanly.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, Final, NoReturn

import attrs
import trio

from lumiku.observability.logging import get_logger

if TYPE_CHECKING:
    from collections.abc import Callable

log = get_logger(__name__)

SIGNALS: Final = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@attrs.define
class ShutdownState:
    """Who is shutting down and how: shared by every component through `Deps`."""

    requested: trio.Event = attrs.field(factory=trio.Event)
    # Set by the HTTP server when its listeners close (`shutdown.readiness_delay_s` after
    # `requested`): open websockets and SSE streams end then, not before, so clients do not
    # reconnect to an instance that load balancers have not taken out yet.
    closing: trio.Event = attrs.field(factory=trio.Event)
    forced: bool = False
    requested_at: float | None = None
    _on_request: list[Callable[[], None]] = attrs.field(factory=list)
    _on_force: list[Callable[[], None]] = attrs.field(factory=list)

    @property
    def draining(self) -> bool:
        return self.requested.is_set()

    def on_request(self, callback: Callable[[], None]) -> None:
        """Run `callback` (synchronously) when a graceful shutdown is requested."""
        self._on_request.append(callback)

    def on_force(self, callback: Callable[[], None]) -> None:
        """Run `callback` (synchronously) when a second signal forces the exit."""
        self._on_force.append(callback)

    def request(self, reason: str) -> None:
        """Begin a graceful shutdown (idempotent)."""
        if self.requested.is_set():
            return
        self.requested_at = trio.current_time()
        log.info("service.draining", reason=reason)
        self.requested.set()
        for callback in self._on_request:
            callback()

    def force(self, reason: str) -> None:
        """Give up on draining: cancel everything now."""
        self.forced = True
        log.warning("service.forced_exit", reason=reason)
        for callback in self._on_force:
            callback()


async def watch_signals(
    state: ShutdownState,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Turn SIGTERM/SIGINT into `state.request`, a second one into `state.force`.

    Installed before anything else opens, so a signal during start-up is honoured.
    Runs until cancelled; restores the previous handlers when it stops.
    """
    with trio.open_signal_receiver(*SIGNALS) as signals:
        task_status.started()
        async for signum in signals:
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                log.info("service.sighup_ignored", detail="SIGHUP reloads nothing")
            elif state.draining:
                state.force(name)
            else:
                state.request(name)
    raise AssertionError("signal receiver ended")  # pragma: no cover
