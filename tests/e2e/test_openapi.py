"""`GET /openapi.json` (SPEC §12): every registered route is documented, nothing else is,
and the document is valid OpenAPI 3.1 (schemathesis loads it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import schemathesis
import trio

from lumiku.apps.builtin import builtin_apps
from lumiku.http import health, metrics, openapi
from lumiku.http.app import create_app
from lumiku.supervisor import open_deps
from tests.e2e.harness import make_settings, running_service

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


def documented(document: dict[str, Any]) -> set[str]:
    return {
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


async def test_every_registered_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with open_deps(settings, apps=builtin_apps()) as deps:
        edge = create_app(deps)
        url_map = edge.app.app.url_map  # type: ignore[attr-defined]
        at_edge = {*health.probes(deps), *metrics.endpoints(deps)}
        assert set(openapi.EDGE_ROUTES) == {f"GET {p}" for p in at_edge}
        gaps = openapi.coverage(url_map)
        assert not gaps.missing, (
            "routes without an OpenAPI entry (add an Op to lumiku/http/openapi_core.py or the "
            f"app's openapi.py): {', '.join(gaps.missing)}"
        )
        assert not gaps.stale, (
            f"OpenAPI entries for routes that are not registered: {', '.join(gaps.stale)}"
        )
        document = openapi.build_document(url_map)
    found = openapi.routes(url_map)
    assert documented(document) == set(found.http)
    assert set(document["x-websockets"]) == set(found.websockets) == {"/api/ws"}
    assert not [
        op for item in document["paths"].values() for op in item.values() if "x-undocumented" in op
    ]


async def test_the_served_document_is_valid_openapi_3_1(tmp_path: Path) -> None:
    with trio.fail_after(30):
        settings = make_settings(tmp_path)
        async with running_service(settings, blueprints=[], apps=builtin_apps()) as service:
            response = await service.client.get("/openapi.json")
            again = await service.client.get("/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert again.content == response.content  # built once
    document = response.json()
    assert document["openapi"] == "3.1.0"
    assert documented(document) == set(openapi.OPERATIONS)
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()  # raises on a document that is not OpenAPI 3.1
    operations = [result.ok() for result in schema.get_all_operations()]  # each one loads
    assert len(operations) == len(openapi.OPERATIONS)
