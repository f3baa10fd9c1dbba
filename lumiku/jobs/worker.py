"""The embedded workers (SPEC §6, §1 step 4): claim due jobs, run each in its own cancel
scope, and turn what the handler did into exactly one fenced transition and its event.

`serve_workers` loops while the service runs: beat the watchdog beacon, claim as many jobs
as each kind has free slots (the per-user cap holds across instances), start them, then
wait for a wake-up or the poll interval. One heartbeat renews the leases of every job
running here every lease/3, in one statement — a job whose (fenced) renewal fails was taken
over by another instance, so it is cancelled and writes nothing. Handler errors steer what
happens next: `Transient` (and any unexpected exception, logged with its trace, and
timeouts) retries with exponential backoff until the attempts run out, `RateLimitedUpstream`
retries after the provider's delay without counting the attempt, `Permanent` fails at once;
failures refund once. Successes with nothing to refund are written together, one statement
for all that finished while the previous write was in flight (`jobs.completions`, a group
commit). On shutdown workers stop claiming, running jobs get the grace, and whatever still
runs is released back to the queue (attempt given back, no refund, no error) for another
instance or the next start.

An outage of the database never ends the workers (SPEC §1): a job's final transition that
cannot be written is logged with the job id and trace (`jobs.finish_failed`) and the job is
left as it is — fenced, its lease runs out and a reaper recovers it — while the slot goes on
claiming; claims, heartbeats and progress writes log and back off (`lumiku.retrying`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from lumiku import events
from lumiku.errors import (
    Permanent,
    ProviderUnavailable,
    RateLimitedUpstream,
    Transient,
)
from lumiku.jobs import transitions
from lumiku.jobs.announce import announce, event_data
from lumiku.jobs.completions import Completions
from lumiku.jobs.metrics import JobMetrics
from lumiku.jobs.models import QUEUED, JobError, Progress, backoff_s
from lumiku.jobs.queue import claim
from lumiku.observability.logging import get_logger, job_id_var
from lumiku.retrying import DEPENDENCY_ERRORS, Backoff, Retrying

if TYPE_CHECKING:
    from collections.abc import Callable
    from uuid import UUID

    from lumiku.deps import Deps
    from lumiku.jobs.kinds import JobKind, Outcome
    from lumiku.jobs.models import Job, Transition
    from lumiku.systemd import Beacon

log = get_logger(__name__)

CLEANUP_BUDGET_S: Final = 10.0
# A running job's row takes its progress at most this often (SPEC §6); every report is
# published as an event at once, numbered by the worker.
PROGRESS_WRITE_S: Final = 0.5
SHUTDOWN: Final = "shutdown"
CANCEL: Final = "cancel"
LEASE_LOST: Final = "lease_lost"
# While claims fail (the database is away) the loop waits at most this long between tries,
# so it keeps beating the watchdog beacon and sees a shutdown at once.
CLAIM_BACKOFF_MAX_S: Final = 5.0


def wall_clock() -> datetime:
    return datetime.now(UTC)


def trio_clock() -> Callable[[], datetime]:
    """A clock that follows trio's (virtual in tests) time from now on."""
    start, origin = datetime.now(UTC), trio.current_time()
    return lambda: start + timedelta(seconds=trio.current_time() - origin)


@attrs.define(eq=False)
class Running:
    scope: trio.CancelScope
    kind: str
    attempt: int
    reason: str | None = None  # why the scope was cancelled
    finishing: bool = False  # the handler is done; the job's transition is being written


@attrs.define
class RunContext:
    """The `JobContext` a handler receives.

    It numbers the job's events while the job runs here: `seq` is the last one published
    (`generation:started` at first). Progress is published at once and stored with every
    other running job's by `_save_progress`, at most every `PROGRESS_WRITE_S`; the job's
    final transition takes `seq` and whatever progress is still `unsaved`.
    """

    worker: Workers
    job: Job
    delivered_cost: int = 0
    seq: int = attrs.field(init=False)
    unsaved: Progress | None = None
    started_at: float = attrs.field(factory=trio.current_time)

    def __attrs_post_init__(self) -> None:
        self.seq = self.job.event_seq

    @property
    def job_id(self) -> str:
        return str(self.job.id)

    @property
    def payload(self) -> Any:
        return self.job.payload

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def user_id(self) -> UUID:
        return self.job.user_id

    @property
    def deps(self) -> Deps:
        return self.worker.deps

    async def progress(self, completed: int, total: int, stage: str) -> None:
        progress = Progress.of(completed, total, stage)
        self.seq += 1
        seq = self.seq
        await self.worker.publish(self.job, events.PROGRESS, seq, progress.as_dict())
        self.unsaved = progress
        self.worker.progress_reported(self)

    def deliver(self, cost: int) -> None:
        self.delivered_cost += cost


@attrs.define
class JobControl:
    """How the rest of the service reaches this instance's workers (set once they start)."""

    workers: Workers | None = None
    queued: int | None = None  # the queue's depth at the reaper's last look
    metrics: JobMetrics = attrs.field(factory=JobMetrics)

    def status(self) -> str:
        """The jobs part of systemd's `STATUS=` line."""
        busy = self.workers.statistics()["busy"] if self.workers is not None else 0
        depth = "?" if self.queued is None else str(self.queued)
        return f"{busy} jobs running here, {depth} queued"

    def wake(self) -> None:
        if self.workers is not None:
            self.workers.wake()

    def cancel_here(self, job_id: UUID) -> bool:
        """Cancel the job at once if it runs on this instance (the instance running it
        elsewhere gets the signal of `jobs.signals`, or sees it at its next heartbeat)."""
        return self.workers is not None and self.workers.cancel(job_id)


@attrs.define
class Workers:
    """This instance's workers: what runs here, and how to wake or stop them."""

    deps: Deps
    beacon: Beacon
    clock: Callable[[], datetime] = wall_clock
    running: dict[UUID, Running] = attrs.field(factory=dict)
    _wake: trio.Event = attrs.field(factory=trio.Event)
    drained: trio.Event = attrs.field(factory=trio.Event)
    # Jobs whose latest progress is not stored yet, and the event `_save_progress` waits on.
    unsaved: dict[UUID, RunContext] = attrs.field(factory=dict)
    _reported: trio.Event = attrs.field(factory=trio.Event)
    # Successes with nothing to refund, written together (group commit).
    completions: Completions = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.completions = Completions(self.deps.store, on_late=self._completed_late)

    async def _completed_late(self, done: Transition) -> None:
        """A success written after its job's task gave up waiting (`jobs.finish_timed_out`):
        counted and announced here instead."""
        job = done.job
        log.warning("jobs.finish_written_late", job_id=str(job.id), attempt=job.attempt)
        self.deps.jobs.metrics.finished(job.kind, job.status)
        await announce(self.deps.events, done)

    @property
    def worker_id(self) -> str:
        return self.deps.instance_id

    def wake(self) -> None:
        """Look for due jobs now (after a submission, a finished job, a shutdown request)."""
        self._wake.set()

    def progress_reported(self, context: RunContext) -> None:
        self.unsaved[context.job.id] = context
        self._reported.set()

    def cancel(self, job_id: UUID) -> bool:
        """Cancel the job if it runs here; it ends `cancelled` with its partial refund."""
        running = self.running.get(job_id)
        if running is None:
            return False
        running.reason = CANCEL
        running.scope.cancel()
        return True

    def statistics(self) -> dict[str, int]:
        total = sum(kind.concurrency for kind in self.deps.kinds.all())
        return {"busy": len(self.running), "total": total}

    async def publish(self, job: Job, kind: str, seq: int, data: dict[str, Any]) -> None:
        await self.deps.events.publish(
            events.Event(
                type=kind,
                job_id=str(job.id),
                user_id=str(job.user_id),
                seq=seq,
                ts=events.utc_now(),
                data=data,
            )
        )


async def serve_workers(
    deps: Deps,
    beacon: Beacon,
    *,
    clock: Callable[[], datetime] = wall_clock,
    task_status: trio.TaskStatus[Workers] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run jobs until a shutdown is requested, then drain (see the module docstring) and
    return; `workers.drained` is set when every job has finished or been released. `clock`
    dates claims, leases and retries (tests pass `trio_clock()`)."""
    workers = Workers(deps, beacon, clock)
    deps.jobs.workers = workers
    deps.shutdown.on_request(workers.wake)
    async with trio.open_nursery() as services:
        # They outlive every job: a job's last writes go through them.
        services.start_soon(_save_progress, workers)
        services.start_soon(_renew_leases, workers)
        await services.start(workers.completions.serve)
        task_status.started(workers)
        async with trio.open_nursery() as nursery:
            await _run_jobs(workers, nursery)
        services.cancel_scope.cancel()
    workers.drained.set()


async def _run_jobs(workers: Workers, nursery: trio.Nursery) -> None:
    """Claim and start jobs until a shutdown is requested; then give the running ones the
    grace and cancel what is left (it is released to the queue)."""
    deps, beacon = workers.deps, workers.beacon
    claiming = Retrying("jobs.claim", deps.troubles, Backoff(max_s=CLAIM_BACKOFF_MAX_S))
    while not deps.shutdown.draining:
        beacon.beat()
        try:
            claimed = await _claim(workers)
        except DEPENDENCY_ERRORS as exc:
            with trio.move_on_after(claiming.failed(exc)):
                await deps.shutdown.requested.wait()
            continue
        if claimed is None:  # no free slot: the database was not asked
            claimed = []
        else:
            claiming.succeeded()
        for job in claimed:
            workers.running[job.id] = Running(trio.CancelScope(), job.kind, job.attempt)
            nursery.start_soon(_run_job, workers, job)
        if not claimed:
            with trio.move_on_after(deps.settings.jobs.poll_s):
                await workers._wake.wait()
            workers._wake = trio.Event()
    with trio.move_on_after(deps.settings.shutdown.grace_s):
        while workers.running:
            beacon.beat()
            with trio.move_on_after(1):
                await workers._wake.wait()
            workers._wake = trio.Event()
    for running in workers.running.values():
        running.reason = SHUTDOWN
        running.scope.cancel()


async def _save_progress(workers: Workers) -> None:
    """Store the running jobs' latest progress, all in one batch, at most every
    `PROGRESS_WRITE_S` (SPEC §6: a job row takes its progress at most every 0.5 s)."""
    retrying = Retrying("jobs.progress", workers.deps.troubles)
    next_at = float("-inf")
    while True:
        await workers._reported.wait()
        await trio.sleep_until(next_at)
        workers._reported = trio.Event()
        batch = [(c, c.unsaved, c.seq) for c in workers.unsaved.values() if c.unsaved]
        workers.unsaved = {}
        next_at = trio.current_time() + PROGRESS_WRITE_S
        reports = [(c.job.id, c.job.attempt, p, seq) for c, p, seq in batch if p is not None]
        try:
            await transitions.save_progress(workers.deps.store, reports)
        except DEPENDENCY_ERRORS as exc:
            delay_s = retrying.failed(exc, at_least_s=PROGRESS_WRITE_S, jobs=len(reports))
            next_at = trio.current_time() + delay_s
            for context, _progress, _seq in batch:  # again after the delay
                workers.progress_reported(context)
            continue
        retrying.succeeded()
        for context, progress, _seq in batch:
            if context.unsaved is progress:
                context.unsaved = None


async def _claim(workers: Workers) -> list[Job] | None:
    """Claim due jobs for the free slots of this instance; None when there is none."""
    deps = workers.deps
    busy: dict[str, int] = {}
    for running in workers.running.values():
        busy[running.kind] = busy.get(running.kind, 0) + 1
    slots = {
        k.name: k.concurrency - busy.get(k.name, 0)
        for k in deps.kinds.all()
        if k.available is None or k.available(deps)  # held: its provider is unavailable
    }
    slots = {name: free for name, free in slots.items() if free > 0}
    if not slots:
        return None
    jobs, now = deps.settings.jobs, workers.clock()
    claimed = await claim(
        deps.store,
        worker_id=workers.worker_id,
        slots=slots,
        per_user_running=jobs.per_user_running,
        lease_s=jobs.lease_s,
        now=now,
    )
    for job in claimed:
        deps.jobs.metrics.claimed(job.kind, (now - job.run_after).total_seconds())
    return claimed


async def _run_job(workers: Workers, job: Job) -> None:
    job_id_var.set(str(job.id))
    running = workers.running[job.id]
    kind = workers.deps.kinds.kind(job.kind)
    context = RunContext(workers, job)
    outcome: Outcome | BaseException | None = None
    try:
        await workers.publish(job, events.STARTED, job.event_seq, event_data(events.STARTED, job))
        with running.scope:
            outcome = await _call(kind, context)
        running.finishing = True
        with trio.CancelScope(shield=True) as cleanup:
            cleanup.deadline = trio.current_time() + CLEANUP_BUDGET_S
            try:
                await _finish(workers, job, context, outcome, running.reason)
            except DEPENDENCY_ERRORS:
                # The write may or may not have committed; either way the row is fenced:
                # left running, its lease runs out and the reaper recovers it.
                log.exception("jobs.finish_failed", job_id=str(job.id), attempt=job.attempt)
        if cleanup.cancelled_caught:
            log.error(
                "jobs.finish_timed_out",
                job_id=str(job.id),
                attempt=job.attempt,
                budget_s=CLEANUP_BUDGET_S,
            )
    finally:
        del workers.running[job.id]
        workers.wake()


async def _call(kind: JobKind, context: RunContext) -> Outcome | BaseException:
    try:
        with trio.fail_after(kind.timeout_s):
            return await kind.handler(context)
    except trio.TooSlowError:
        return Transient(f"the job took longer than {kind.timeout_s} s")
    except Exception as exc:  # the handler's error decides the retry; never the worker's death
        if not isinstance(exc, Transient | RateLimitedUpstream | Permanent):
            log.exception("jobs.handler_crashed", kind=kind.name)
        return exc


async def _renew_leases(workers: Workers) -> None:
    """The heartbeat of every job running here: every lease/3, one statement renews all
    their leases. A job whose fence failed was taken over by another instance (it is
    cancelled and writes nothing); a job whose cancellation was requested, possibly through
    another instance, is cancelled (it ends `cancelled` with its partial refund)."""
    deps = workers.deps
    lease_s = deps.settings.jobs.lease_s
    retrying = Retrying("jobs.heartbeat", deps.troubles)
    while True:
        await trio.sleep(lease_s / 3)
        mine = {i: r for i, r in workers.running.items() if r.reason is None and not r.finishing}
        if not mine:
            continue
        try:
            renewed = await transitions.renew_leases(
                deps.store,
                [(job_id, running.attempt) for job_id, running in mine.items()],
                workers.worker_id,
                lease_s,
                workers.clock(),
            )
        except DEPENDENCY_ERRORS as exc:
            # still every lease/3 while the database is away: a lease renewed late is lost
            retrying.failed(exc, at_least_s=lease_s / 3, at_most_s=lease_s / 3, jobs=len(mine))
            continue
        retrying.succeeded()
        for job_id, running in mine.items():
            cancel_requested = renewed.get(job_id)
            if running.finishing or running.reason is not None or cancel_requested is False:
                continue  # done meanwhile, already cancelled, or renewed
            if cancel_requested is None:
                log.warning("jobs.lease_lost", job_id=str(job_id), attempt=running.attempt)
                running.reason = LEASE_LOST
            else:
                running.reason = CANCEL
            running.scope.cancel()


async def _finish(
    workers: Workers,
    job: Job,
    context: RunContext,
    outcome: Outcome | BaseException | None,
    reason: str | None,
) -> None:
    store = workers.deps.store
    workers.unsaved.pop(job.id, None)  # the final transition stores it
    seen, progress = context.seq, context.unsaved
    if outcome is None:  # cancelled before the handler returned
        if reason == SHUTDOWN:
            if await transitions.release(store, job.id, job.attempt, seen_seq=seen):
                workers.deps.jobs.metrics.released(job.kind)
        elif reason == CANCEL:
            refund = max(job.cost - job.refunded - context.delivered_cost, 0)
            done = await transitions.finish_cancelled(
                store, job.id, job.attempt, refund=refund, seen_seq=seen, progress=progress
            )
            await _announce(workers, done, context)
        return  # LEASE_LOST: another instance owns the job now; write nothing
    if isinstance(outcome, BaseException):
        await _failed(workers, job, context, outcome)
        return
    refund = min(outcome.undelivered_cost, job.cost - job.refunded)
    if refund == 0:  # the common case: written with the other successes of the moment
        completion = transitions.Completion(
            job.id, job.attempt, dict(outcome.result), seen, progress
        )
        await _announce(workers, await workers.completions.complete(completion), context)
        return
    done = await transitions.complete(
        store,
        job.id,
        job.attempt,
        dict(outcome.result),
        refund=refund,
        seen_seq=seen,
        progress=progress,
    )
    await _announce(workers, done, context)


async def _failed(workers: Workers, job: Job, context: RunContext, error: BaseException) -> None:
    store, settings = workers.deps.store, workers.deps.settings.jobs
    seen = context.seq
    if isinstance(error, RateLimitedUpstream):  # held, the attempt not counted
        code = "PROVIDER_UNAVAILABLE" if isinstance(error, ProviderUnavailable) else "RATE_LIMITED"
        run_after = workers.clock() + timedelta(seconds=error.retry_after_s)
        done = await transitions.retry(
            store,
            job.id,
            job.attempt,
            JobError(code, str(error), True),
            run_after,
            count_attempt=False,
            seen_seq=seen,
        )
        await _announce(workers, done, context, code)
        return
    retryable = not isinstance(error, Permanent)
    code = (
        "PERMANENT"
        if not retryable
        else ("TIMEOUT" if "longer than" in str(error) else "TRANSIENT")
    )
    job_error = JobError(code, str(error) or type(error).__name__, retryable)
    if retryable and job.attempt < job.max_attempts:
        delay = backoff_s(job.attempt, settings.backoff_s, settings.backoff_max_s)
        if isinstance(error, Transient) and error.retry_after_s is not None:
            delay = error.retry_after_s  # the provider's own estimate (a model still loading)
        done = await transitions.retry(
            store,
            job.id,
            job.attempt,
            job_error,
            workers.clock() + timedelta(seconds=delay),
            count_attempt=True,
            seen_seq=seen,
        )
        await _announce(workers, done, context, code)
        return
    done = await transitions.fail(
        store,
        job.id,
        job.attempt,
        job_error,
        workers.clock(),
        seen_seq=seen,
        progress=context.unsaved,
    )
    await _announce(workers, done, context)


async def _announce(
    workers: Workers, done: Transition | None, context: RunContext, code: str = ""
) -> None:
    """Count and publish what the job's transition did."""
    if done is None:  # the fence held: someone else owns the job now
        return
    job, metrics = done.job, workers.deps.jobs.metrics
    if job.status == QUEUED:
        metrics.retried(job.kind, code)
    else:
        metrics.finished(job.kind, job.status, trio.current_time() - context.started_at)
        metrics.refunded(job.app, done.credit_refunded)
    await announce(workers.deps.events, done)
