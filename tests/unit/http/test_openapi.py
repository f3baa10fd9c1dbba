"""The OpenAPI builder's pieces: paths, body schemas from attrs records, implied responses."""

from __future__ import annotations

import attrs
import pytest
from quart import Blueprint
from quart_trio import QuartTrio

from lumiku.accounts import routes as accounts_routes
from lumiku.http import openapi
from lumiku.http.openapi_schemas import body_schema
from lumiku.jobs import routes as jobs_routes


@attrs.frozen
class Sample:
    name: str
    tags: tuple[str, ...] | None = None
    size: int | None = None
    public: bool = False


def test_werkzeug_rules_become_openapi_paths() -> None:
    assert openapi.openapi_path("/api/jobs/<job_id>") == "/api/jobs/{job_id}"
    assert openapi.openapi_path("/files/<path:key>") == "/files/{key}"
    assert openapi.openapi_path("/p/<uuid:a>/<b>") == "/p/{a}/{b}"


def test_a_body_schema_follows_the_record() -> None:
    schema = body_schema(Sample, required=("size",), rules={"size": {"minimum": 1}})
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["name", "size"]
    assert schema["properties"]["name"] == {"type": "string"}
    assert schema["properties"]["tags"] == {
        "type": ["array", "null"],
        "items": {"type": "string"},
    }
    assert schema["properties"]["size"] == {"type": ["integer", "null"], "minimum": 1}
    assert schema["properties"]["public"] == {"type": "boolean"}


def test_a_rule_for_a_field_the_record_lacks_is_refused() -> None:
    with pytest.raises(ValueError, match="Sample has no field"):
        body_schema(Sample, rules={"colour": {"enum": ["red"]}})


def test_coverage_names_undocumented_routes_and_stale_entries() -> None:
    app = QuartTrio("coverage")
    extra = Blueprint("extra", __name__)

    @extra.get("/api/undocumented/<thing_id>")
    async def undocumented(thing_id: str) -> str:
        return thing_id

    app.register_blueprint(extra)
    gaps = openapi.coverage(app.url_map)
    assert gaps.missing == ("GET /api/undocumented/{thing_id}",)
    assert "GET /api/credits/balance" in gaps.stale  # documented, not registered here
    document = openapi.build_document(app.url_map)
    operation = document["paths"]["/api/undocumented/{thing_id}"]["get"]
    assert operation["x-undocumented"] is True
    assert operation["parameters"][0]["name"] == "thing_id"


def test_declarations_imply_their_error_responses() -> None:
    app = QuartTrio("implied")
    app.register_blueprint(accounts_routes.blueprint)
    app.register_blueprint(jobs_routes.blueprint)
    paths = openapi.build_document(app.url_map)["paths"]
    register = paths["/api/auth/register"]["post"]
    assert set(register["responses"]) >= {"201", "400", "409", "413", "415", "429", "500"}
    assert register["security"] == []
    retry = paths["/api/admin/jobs/{job_id}/retry"]["post"]
    assert set(retry["responses"]) >= {"202", "401", "402", "403", "404", "500"}
    assert retry["security"] == [{"bearer": []}]
    problem = retry["responses"]["403"]["content"]["application/problem+json"]["schema"]
    assert problem == {"$ref": "#/components/schemas/Problem"}
