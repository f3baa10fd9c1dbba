from __future__ import annotations

import pytest

from lumiku.jobs.kinds import JobContext, JobKind, JobKinds, Outcome


async def noop(ctx: JobContext) -> Outcome:
    return Outcome({"ok": True})


def test_kinds_by_name() -> None:
    render = JobKind("demo.render", noop, concurrency=3)
    kinds = JobKinds([render])
    assert kinds.kind("demo.render") is render
    assert kinds.all() == (render,)
    assert "demo.render" in kinds
    assert "demo.other" not in kinds
    with pytest.raises(KeyError):
        kinds.kind("demo.other")


def test_a_name_is_taken_once() -> None:
    kinds = JobKinds([JobKind("demo.render", noop)])
    with pytest.raises(ValueError, match="registered already"):
        kinds.add(JobKind("demo.render", noop, concurrency=5))


@pytest.mark.parametrize("bad", ["render", "demo.", "Demo.render", "demo.render.x"])
def test_kind_names_look_like_app_action(bad: str) -> None:
    with pytest.raises(ValueError, match="job kind"):
        JobKind(bad, noop)


def test_kind_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        JobKind("demo.render", noop, concurrency=0)
