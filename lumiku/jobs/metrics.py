"""What this instance's queue did, counted where it happens (SPEC §13.3's job series).

```
submit_job ─ submitted(kind)         workers ─ claimed(kind, wait_s)   finished(kind, status, run_s)
reaper     ─ stalled(kind)                   ─ retried(kind, code)     released(kind)
cancel     ─ finished(kind, "cancelled")
credits    ─ charged(app, amount)   at submission (and an admin retry's new charge)
           ─ refunded(app, amount)  with the terminal transition that refunded
```

`JobMetrics` keeps plain in-memory totals per kind (never reset; one instance's view, like
any Prometheus counter) and hands every observation to the `observers` registered with
`observe()`, so the metrics endpoint can feed prometheus-client histograms without the
queue knowing about it. `snapshot()` is what `/health/detailed` shows. Observers run on the
event loop inside the worker: they must be quick and must not raise (an error is logged and
the observer dropped, never the job). The credits totals (`charged_total`, `refunded_total`,
by app) are not handed to observers: the metrics endpoint reads them when scraped.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

import attrs

from lumiku.observability.logging import get_logger

log = get_logger(__name__)


class JobObserver(Protocol):
    """Receives each observation; implement the ones of interest (see `BaseObserver`)."""

    def submitted(self, kind: str) -> None: ...
    def claimed(self, kind: str, wait_s: float) -> None: ...
    def finished(self, kind: str, status: str, run_s: float | None) -> None: ...
    def retried(self, kind: str, code: str) -> None: ...
    def stalled(self, kind: str) -> None: ...
    def released(self, kind: str) -> None: ...


@attrs.define
class Timing:
    """Count, total and maximum of some durations, in seconds."""

    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        self.max_s = max(self.max_s, seconds)

    def as_dict(self) -> dict[str, Any]:
        mean = self.total_s / self.count if self.count else None
        return {
            "count": self.count,
            "mean_s": None if mean is None else round(mean, 3),
            "max_s": round(self.max_s, 3),
        }


@attrs.define
class JobMetrics:
    """This instance's job totals; see the module docstring."""

    submitted_total: Counter[str] = attrs.field(factory=Counter)
    finished_total: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    retries_total: Counter[tuple[str, str]] = attrs.field(factory=Counter)
    stalls_total: Counter[str] = attrs.field(factory=Counter)
    released_total: Counter[str] = attrs.field(factory=Counter)
    charged_total: Counter[str] = attrs.field(factory=Counter)  # app → credits charged
    refunded_total: Counter[str] = attrs.field(factory=Counter)  # app → credits refunded
    wait: dict[str, Timing] = attrs.field(factory=dict)
    run: dict[str, Timing] = attrs.field(factory=dict)
    observers: list[JobObserver] = attrs.field(factory=list)

    def observe(self, observer: JobObserver) -> None:
        """Hand every later observation to `observer` as well."""
        self.observers.append(observer)

    def submitted(self, kind: str) -> None:
        self.submitted_total[kind] += 1
        self._tell("submitted", kind)

    def claimed(self, kind: str, wait_s: float) -> None:
        """A job of `kind` started `wait_s` after it became due."""
        wait_s = max(wait_s, 0.0)
        self.wait.setdefault(kind, Timing()).add(wait_s)
        self._tell("claimed", kind, wait_s)

    def finished(self, kind: str, status: str, run_s: float | None = None) -> None:
        """A job ended `status`; `run_s` is its last attempt's run time (None when it never
        ran here, e.g. cancelled while queued)."""
        self.finished_total[kind, status] += 1
        if run_s is not None:
            self.run.setdefault(kind, Timing()).add(run_s)
        self._tell("finished", kind, status, run_s)

    def retried(self, kind: str, code: str) -> None:
        self.retries_total[kind, code] += 1
        self._tell("retried", kind, code)

    def stalled(self, kind: str) -> None:
        self.stalls_total[kind] += 1
        self._tell("stalled", kind)

    def released(self, kind: str) -> None:
        self.released_total[kind] += 1
        self._tell("released", kind)

    def charged(self, app: str, amount: int) -> None:
        """`amount` credits were charged for a job of `app` (0, for unlimited users: none)."""
        if amount:
            self.charged_total[app] += amount

    def refunded(self, app: str, amount: int) -> None:
        """`amount` credits went back to a job's owner as the job of `app` ended."""
        if amount:
            self.refunded_total[app] += amount

    def snapshot(self) -> dict[str, Any]:
        """Totals per kind, for `/health/detailed`."""
        kinds = sorted(
            {*self.submitted_total, *(k for k, _ in self.finished_total), *self.wait, *self.run}
            | {*(k for k, _ in self.retries_total), *self.stalls_total, *self.released_total}
        )
        finished, retries = sorted(self.finished_total.items()), sorted(self.retries_total.items())
        return {
            kind: {
                "submitted": self.submitted_total[kind],
                "finished": {status: n for (k, status), n in finished if k == kind},
                "retries": {code: n for (k, code), n in retries if k == kind},
                "stalls": self.stalls_total[kind],
                "released": self.released_total[kind],
                "wait": self.wait.get(kind, Timing()).as_dict(),
                "run": self.run.get(kind, Timing()).as_dict(),
            }
            for kind in kinds
        }

    def _tell(self, name: str, *args: Any) -> None:
        for observer in list(self.observers):
            try:
                getattr(observer, name)(*args)
            except Exception:  # an observer must never cost a job
                log.exception("jobs.observer_failed", observer=type(observer).__name__)
                self.observers.remove(observer)
