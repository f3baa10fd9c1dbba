"""Apps registered through the registry are listed and mounted under /api/apps/<id>."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import trio
from quart import Blueprint

from lumiku import supervisor
from lumiku.apps.builtin import builtin_apps
from lumiku.apps.registry import App, Registry
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
from lumiku.observability import logging as logs
from tests.e2e.harness import bearer, make_settings, register, running_service


async def render(ctx: JobContext) -> Outcome:
    return Outcome({"rendered": True})


def demo_registry() -> Registry:
    routes = Blueprint("demo-app", __name__, url_prefix="/api/apps/demo")

    @routes.get("/hello")
    async def hello() -> dict[str, Any]:
        return {"hello": "demo"}

    return Registry(
        [
            App(
                "demo",
                "Demo app",
                kinds=(JobKind("demo.render", render),),
                costs={"render": 10},
                blueprint=routes,
            )
        ]
    )


async def test_registered_apps_are_listed_and_mounted(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with running_service(make_settings(tmp_path), apps=demo_registry()) as service:
            user = await register(service.client, "apps@example.com")
            listed = await service.client.get("/api/apps", headers=bearer(user["token"]))
            anonymous = await service.client.get("/api/apps")
            hello = await service.client.get("/api/apps/demo/hello")
    assert listed.status_code == 200
    assert listed.json() == {
        "apps": [
            {
                "id": "demo",
                "name": "Demo app",
                "description": "",
                "icon": "",
                "color": "",
                "order": 100,
                "beta": False,
                "costs": {"render": 10},
                "pricing_url": None,
            }
        ]
    }
    assert anonymous.status_code == 401
    assert hello.json() == {"hello": "demo"}


async def test_each_app_counts_its_own_generate_rule(tmp_path: Path) -> None:
    # SPEC §17: rules are named per app, so Avatar's generate and Pose's never share a bucket
    # (the shared `ratelimit.generate` of before gives each app the rate, counted apart).
    settings = make_settings(tmp_path, {"LUMIKU_RATELIMIT_GENERATE": "1/1m"})
    project = "00000000-0000-4000-8000-000000000000"
    avatar = f"/api/apps/avatar-creator/projects/{project}/avatars/generate"
    pose = "/api/apps/pose-generator/generate"
    with trio.fail_after(30):
        async with running_service(settings, apps=builtin_apps()) as service:
            user = await register(service.client, "buckets@example.com")
            auth = bearer(user["token"])
            # the limit is checked before the body: an empty body counts too (400)
            first = await service.client.post(avatar, headers=auth, json={})
            exhausted = await service.client.post(avatar, headers=auth, json={})
            other_app = await service.client.post(pose, headers=auth, json={})
            other_app_again = await service.client.post(pose, headers=auth, json={})
    assert first.status_code == 400
    assert first.headers["RateLimit-Remaining"] == "0"
    assert exhausted.status_code == 429
    assert other_app.status_code == 400  # still open: its own bucket
    assert other_app.headers["RateLimit-Limit"] == "1"
    assert other_app.headers["RateLimit-Remaining"] == "0"
    assert other_app_again.status_code == 429


async def test_a_setting_naming_a_rule_no_app_declares_stops_the_start(tmp_path: Path) -> None:
    env = {"LUMIKU_RATELIMIT_APPS": "avatar-creatr.generate=1/1m"}  # a typo
    log = io.StringIO()
    logs.configure("info", "json", stream=log)
    with trio.fail_after(20):
        code = await supervisor.run(make_settings(tmp_path, env), apps=builtin_apps())
    assert code == supervisor.EXIT_CONFIG
    assert "avatar-creatr.generate" in log.getvalue()
