"""Signals between instances about jobs (SPEC §6): "there is work" and "cancel this job".

```
sender (any instance)                          every instance (serve_signals)
  in the transaction that changes the job:       LISTEN lumiku_jobs on its own connection
  tx.notify("lumiku_jobs", "wake")         →       "wake"        → its workers claim now
  tx.notify("lumiku_jobs", "cancel <id>")  →       "cancel <id>" → cancels the job if it runs here
```

Signals travel on PostgreSQL NOTIFY, sent inside the transaction that queued or changed the
job (for a submission by the job's INSERT statement itself, `insert_job`, saving a round
trip), so they are delivered exactly when that transaction commits and never for one that
rolled back; a crash between the commit and a separate publish (Redis pub/sub) cannot lose
them, and they need no Redis. The sender also signals its own instance directly, at once. On SQLite
there is one instance, so the direct signal is the whole story (`notify` is a no-op there).

Signals only make things faster: a missed one costs latency, never correctness — workers
still poll every `jobs.poll_s`, and a running job's heartbeat (every lease/3) sees a
cancellation. While the listening connection is down, `serve_signals` reconnects with
jittered backoff (`lumiku.retrying`) and then wakes the workers, in case a submission was
missed meanwhile.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Final, NoReturn

import trio

from lumiku.observability.logging import get_logger
from lumiku.retrying import DEPENDENCY_ERRORS, Backoff, Retrying

if TYPE_CHECKING:
    from lumiku.db.store import Tx
    from lumiku.deps import Deps

log = get_logger(__name__)

CHANNEL: Final = "lumiku_jobs"
WAKE: Final = "wake"
CANCEL: Final = "cancel "
# An idle listening connection is pinged this often, so a silently dead one is noticed.
PING_EVERY_S: Final = 30.0
BACKOFF_MIN_S: Final = 0.5
BACKOFF_MAX_S: Final = 10.0


async def wake_everywhere(tx: Tx) -> None:
    """Every instance's workers look for due jobs once `tx` commits."""
    await tx.notify(CHANNEL, WAKE)


async def cancel_everywhere(tx: Tx, job_id: uuid.UUID) -> None:
    """The instance running `job_id` cancels it once `tx` commits."""
    await tx.notify(CHANNEL, f"{CANCEL}{job_id}")


async def serve_signals(
    deps: Deps, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> NoReturn:
    """Listen for signals and act on them until cancelled.

    Reports started once listening, or after the first failed attempt (a database that is
    briefly away must not stop the service from starting: polling covers for it).
    """
    retrying = Retrying("jobs.signals", deps.troubles, Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S))
    started = False
    while True:
        try:
            async with deps.store.listen(CHANNEL) as listener:
                if not started:
                    started = True
                    task_status.started()
                elif retrying.failures:
                    log.info("jobs.signals_listening")
                    deps.jobs.wake()  # a submission may have been signalled meanwhile
                retrying.succeeded()
                while True:
                    with trio.move_on_after(PING_EVERY_S) as idle:
                        payload = await listener.receive()
                    if idle.cancelled_caught:
                        await listener.ping()
                    else:
                        dispatch(deps, payload)
        except DEPENDENCY_ERRORS as exc:
            delay_s = retrying.failed(exc)
        if not started:
            started = True
            task_status.started()
        await trio.sleep(delay_s)


def dispatch(deps: Deps, payload: str) -> None:
    """Act on one signal; anything unrecognised is logged and ignored."""
    if payload == WAKE:
        deps.jobs.wake()
        return
    if payload.startswith(CANCEL):
        try:
            job_id = uuid.UUID(payload.removeprefix(CANCEL))
        except ValueError:
            pass
        else:
            if deps.jobs.cancel_here(job_id):
                log.info("jobs.cancel_signalled", job_id=str(job_id))
            return
    log.warning("jobs.unknown_signal", payload=payload[:100])
