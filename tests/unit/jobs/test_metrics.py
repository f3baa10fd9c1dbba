"""JobMetrics: per-kind totals for /health/detailed, and observers that never cost a job."""

from __future__ import annotations

from typing import Any

import attrs

from lumiku.jobs.metrics import JobMetrics


@attrs.define
class Recorder:
    calls: list[tuple[Any, ...]] = attrs.field(factory=list)

    def submitted(self, kind: str) -> None:
        self.calls.append(("submitted", kind))

    def claimed(self, kind: str, wait_s: float) -> None:
        self.calls.append(("claimed", kind, wait_s))

    def finished(self, kind: str, status: str, run_s: float | None) -> None:
        self.calls.append(("finished", kind, status, run_s))

    def retried(self, kind: str, code: str) -> None:
        self.calls.append(("retried", kind, code))

    def stalled(self, kind: str) -> None:
        self.calls.append(("stalled", kind))

    def released(self, kind: str) -> None:
        self.calls.append(("released", kind))


class Broken(Recorder):
    def claimed(self, kind: str, wait_s: float) -> None:
        raise RuntimeError("observer bug")


def test_totals_per_kind_and_every_observation_reaches_the_observers() -> None:
    metrics, recorder, broken = JobMetrics(), Recorder(), Broken()
    metrics.observe(broken)
    metrics.observe(recorder)
    metrics.submitted("a.x")
    metrics.submitted("a.x")
    metrics.claimed("a.x", 2.0)
    metrics.claimed("a.x", -0.5)  # clocks of two instances: never a negative wait
    metrics.retried("a.x", "TRANSIENT")
    metrics.finished("a.x", "succeeded", 1.5)
    metrics.finished("a.x", "cancelled")  # cancelled while queued: no run time
    metrics.stalled("b.y")
    metrics.released("b.y")

    snapshot = metrics.snapshot()
    assert snapshot["a.x"] == {
        "submitted": 2,
        "finished": {"cancelled": 1, "succeeded": 1},
        "retries": {"TRANSIENT": 1},
        "stalls": 0,
        "released": 0,
        "wait": {"count": 2, "mean_s": 1.0, "max_s": 2.0},
        "run": {"count": 1, "mean_s": 1.5, "max_s": 1.5},
    }
    assert (snapshot["b.y"]["stalls"], snapshot["b.y"]["released"]) == (1, 1)
    assert snapshot["b.y"]["wait"] == {"count": 0, "mean_s": None, "max_s": 0.0}
    assert recorder.calls == [
        ("submitted", "a.x"),
        ("submitted", "a.x"),
        ("claimed", "a.x", 2.0),
        ("claimed", "a.x", 0.0),
        ("retried", "a.x", "TRANSIENT"),
        ("finished", "a.x", "succeeded", 1.5),
        ("finished", "a.x", "cancelled", None),
        ("stalled", "b.y"),
        ("released", "b.y"),
    ]
    # the broken observer saw the two submissions, failed once and was dropped
    assert broken.calls == [("submitted", "a.x"), ("submitted", "a.x")]
    assert metrics.observers == [recorder]


def test_credits_are_totalled_by_app_and_zero_amounts_leave_no_series() -> None:
    metrics, recorder = JobMetrics(), Recorder()
    metrics.observe(recorder)
    metrics.charged("avatar-creator", 10)
    metrics.charged("avatar-creator", 8)
    metrics.charged("pose-generator", 0)  # an unlimited user's job
    metrics.refunded("avatar-creator", 10)
    metrics.refunded("pose-generator", 0)  # succeeded with everything delivered
    assert metrics.charged_total == {"avatar-creator": 18}
    assert metrics.refunded_total == {"avatar-creator": 10}
    assert recorder.calls == []  # read when scraped, never handed to observers
