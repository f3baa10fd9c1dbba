from __future__ import annotations

import pytest
from quart import Blueprint

from lumiku.apps.registry import App, JobContext, JobKind, Outcome, Registry


async def noop(ctx: JobContext) -> Outcome:
    return Outcome({"ok": True})


def test_lookup_by_app_and_kind() -> None:
    kind = JobKind("demo.render", noop, concurrency=3)
    app = App("demo", "Demo", kinds=(kind,), costs={"render": 10})
    registry = Registry([app])
    assert registry.app("demo") is app
    assert registry.kind("demo.render") == (app, kind)
    assert registry.kinds() == (kind,)
    with pytest.raises(KeyError):
        registry.kind("demo.other")


def test_duplicates_are_refused() -> None:
    registry = Registry([App("demo", "Demo", kinds=(JobKind("demo.render", noop),))])
    with pytest.raises(ValueError, match="registered already"):
        registry.register(App("demo", "Again"))
    with pytest.raises(ValueError, match="job kind"):
        registry.register(App("other", "Other", kinds=(JobKind("demo.render", noop),)))


@pytest.mark.parametrize("bad", ["Demo", "x", "has space", "-dash", "a" * 50])
def test_app_ids_are_url_safe(bad: str) -> None:
    with pytest.raises(ValueError, match="app id"):
        App(bad, "Bad")


@pytest.mark.parametrize("bad", ["render", "demo.", "Demo.render", "demo.render.x"])
def test_kind_names_look_like_app_action(bad: str) -> None:
    with pytest.raises(ValueError, match="job kind"):
        JobKind(bad, noop)


def test_kind_limits_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        JobKind("demo.render", noop, concurrency=0)


def test_blueprints_must_live_under_the_app_prefix() -> None:
    with pytest.raises(ValueError, match="/api/apps/demo"):
        App("demo", "Demo", blueprint=Blueprint("demo", __name__, url_prefix="/api/demo"))
    good = Blueprint("demo", __name__, url_prefix="/api/apps/demo")
    assert Registry([App("demo", "Demo", blueprint=good)]).blueprints() == (good,)


def test_negative_costs_are_refused() -> None:
    with pytest.raises(ValueError, match="negative cost"):
        App("demo", "Demo", costs={"render": -1})
