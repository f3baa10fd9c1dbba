from __future__ import annotations

import pytest
from quart import Blueprint

from lumiku.apps.registry import App, Registry
from lumiku.jobs.kinds import JobContext, JobKind, Outcome


async def noop(ctx: JobContext) -> Outcome:
    return Outcome({"ok": True})


def test_lookup_by_app_and_kind() -> None:
    kind = JobKind("demo.render", noop, concurrency=3)
    app = App("demo", "Demo", kinds=(kind,), costs={"render": 10})
    registry = Registry([app])
    assert registry.app("demo") is app
    assert registry.job_kinds.kind("demo.render") is kind  # what the workers get
    assert registry.job_kinds.all() == (kind,)
    with pytest.raises(KeyError):
        registry.app("other")


def test_duplicates_are_refused() -> None:
    registry = Registry([App("demo", "Demo", kinds=(JobKind("demo.render", noop),))])
    with pytest.raises(ValueError, match="registered already"):
        registry.register(App("demo", "Again"))
    with pytest.raises(ValueError, match="job kind"):
        registry.register(App("other", "Other", kinds=(JobKind("demo.render", noop),)))
    assert [app.id for app in registry.apps()] == ["demo"]  # a refused app leaves no trace
    assert len(registry.job_kinds.all()) == 1


def test_an_app_repeating_its_own_kind_is_refused_whole() -> None:
    registry = Registry()
    twice = (JobKind("demo.render", noop), JobKind("demo.render", noop))
    with pytest.raises(ValueError, match="job kind"):
        registry.register(App("demo", "Demo", kinds=twice))
    assert registry.apps() == ()
    assert registry.job_kinds.all() == ()


@pytest.mark.parametrize("bad", ["Demo", "x", "has space", "-dash", "a" * 50])
def test_app_ids_are_url_safe(bad: str) -> None:
    with pytest.raises(ValueError, match="app id"):
        App(bad, "Bad")


def test_blueprints_must_live_under_the_app_prefix() -> None:
    with pytest.raises(ValueError, match="/api/apps/demo"):
        App("demo", "Demo", blueprint=Blueprint("demo", __name__, url_prefix="/api/demo"))
    good = Blueprint("demo", __name__, url_prefix="/api/apps/demo")
    assert Registry([App("demo", "Demo", blueprint=good)]).blueprints() == (good,)


def test_negative_costs_are_refused() -> None:
    with pytest.raises(ValueError, match="negative cost"):
        App("demo", "Demo", costs={"render": -1})
