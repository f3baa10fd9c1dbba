"""Apps registered through the registry are listed and mounted under /api/apps/<id>."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
from quart import Blueprint

from lumiku.apps.registry import App, Registry
from lumiku.jobs.kinds import JobContext, JobKind, Outcome
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
