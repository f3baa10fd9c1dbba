"""`GET /openapi.json`: the OpenAPI 3.1 document of every route (SPEC §12).

The document is built once per app, on the first request, from the app's registered URL
rules and the route tables (`OPERATIONS`: `openapi_core.py` and each app's `openapi.py`;
see `openapi_ops.py` for how an entry reads). The rules decide which operations exist; the
tables say what they take and answer. A rule without an entry still appears (answering
`default`, flagged `x-undocumented`) and `coverage()` names it, as it names an entry
whose route is not registered: the test over the real app fails on either.

Websocket routes are not OpenAPI operations (3.1 has no way to describe a message
protocol); they are listed under the top-level `x-websockets` extension, and coverage
accounts for them the same way. `/health` and `/health/liveness` are answered by the
edge middleware before quart routes (`EDGE_ROUTES`); they are documented as operations.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Final

import attrs
from quart import Blueprint, Response, current_app

from lumiku import __version__
from lumiku.apps.avatar_creator import openapi as avatar_creator_docs
from lumiku.apps.pose_generator import openapi as pose_generator_docs
from lumiku.http import openapi_core
from lumiku.http.openapi_ops import PROBLEM, Op, Resp
from lumiku.http.openapi_schemas import COMPONENTS, STRING, Schema, ref
from lumiku.payments import openapi as payments_docs

if TYPE_CHECKING:
    from werkzeug.routing import Map

OPERATIONS: Final[dict[str, Op]] = {
    **openapi_core.OPERATIONS,
    **avatar_creator_docs.OPERATIONS,
    **pose_generator_docs.OPERATIONS,
    **payments_docs.OPERATIONS,
}
WEBSOCKETS: Final[dict[str, dict[str, Any]]] = openapi_core.WEBSOCKETS
EDGE_ROUTES: Final = ("GET /health", "GET /health/liveness", "GET /metrics")

MEDIA_TYPE: Final = "application/json"
_CACHE_KEY: Final = "lumiku.openapi"
_PARAM: Final = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")
_PATH_PARAM: Final = re.compile(r"{([^{}]+)}")
_AUTOMATIC: Final = frozenset({"HEAD", "OPTIONS"})

blueprint = Blueprint("openapi", __name__)


@attrs.frozen
class Routes:
    """An app's routes as document keys: `"METHOD /path/{param}"` → endpoint, and the
    websocket paths."""

    http: dict[str, str]
    websockets: frozenset[str]


@attrs.frozen
class Coverage:
    missing: tuple[str, ...]  # registered, not documented
    stale: tuple[str, ...]  # documented, not registered


def openapi_path(rule: str) -> str:
    """`/api/jobs/<job_id>` or `/files/<path:key>` → `/api/jobs/{job_id}`, `/files/{key}`."""
    return _PARAM.sub(r"{\1}", rule)


def routes(url_map: Map) -> Routes:
    """The routes of `url_map` plus the edge's (HEAD and OPTIONS are implied by GET and
    answered for every route, so they are not operations of their own)."""
    http = {key: "edge." + key.split(" ", 1)[1].strip("/").replace("/", ".") for key in EDGE_ROUTES}
    websockets = set()
    for rule in url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = openapi_path(rule.rule)
        if rule.websocket:
            websockets.add(path)
            continue
        methods = sorted((rule.methods or set()) - _AUTOMATIC)
        for method in methods:
            suffix = f"_{method.lower()}" if len(methods) > 1 else ""
            http[f"{method} {path}"] = f"{rule.endpoint}{suffix}"
    return Routes(http, frozenset(websockets))


def coverage(url_map: Map) -> Coverage:
    """What the document lacks (routes without an entry) and what it has too much of
    (entries, websockets included, for routes the app does not register)."""
    found = routes(url_map)
    registered = set(found.http) | {f"WEBSOCKET {p}" for p in found.websockets}
    documented = set(OPERATIONS) | {f"WEBSOCKET {p}" for p in WEBSOCKETS}
    return Coverage(tuple(sorted(registered - documented)), tuple(sorted(documented - registered)))


def build_document(url_map: Map) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes in `url_map` (see the module docstring)."""
    found = routes(url_map)
    paths: dict[str, dict[str, Any]] = {}
    for key in sorted(found.http, key=lambda k: (k.split(" ", 1)[1], k)):
        method, path = key.split(" ", 1)
        op = OPERATIONS.get(key)
        operation = _undocumented(path) if op is None else _operation(path, op)
        operation["operationId"] = found.http[key]
        paths.setdefault(path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Lumiku",
            "version": __version__,
            "description": "Credits, avatars, posed image generation and live progress. "
            "Errors are RFC 9457 problem details (application/problem+json) with a stable "
            "upper-case `code`; every response carries X-Request-ID.",
        },
        "tags": [{"name": name} for name in openapi_core.TAGS],
        "paths": paths,
        "components": {"schemas": COMPONENTS, "securitySchemes": _SECURITY_SCHEMES},
        "x-websockets": {p: WEBSOCKETS.get(p, {"x-undocumented": True}) for p in found.websockets},
    }


_SECURITY_SCHEMES: Final = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
    "queryToken": {
        "type": "apiKey",
        "in": "query",
        "name": "token",
        "description": "the same JWT, for clients that cannot set headers (EventSource)",
    },
}
_SECURITY: Final[dict[str | None, list[dict[str, list[str]]]]] = {
    None: [],
    "user": [{"bearer": []}],
    "admin": [{"bearer": []}],
    "token": [{"bearer": []}, {"queryToken": []}],
    # or a signed URL (`exp` + `sig`), which OpenAPI security schemes cannot express
    "file": [{"bearer": []}, {}],
}


def _undocumented(path: str) -> dict[str, Any]:
    return {
        "summary": "Undocumented route",
        "x-undocumented": True,
        "parameters": [_path_param(name, STRING) for name in _PATH_PARAM.findall(path)],
        "responses": {"default": {"description": "Not documented yet"}},
    }


def _path_param(name: str, schema: Schema) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _operation(path: str, op: Op) -> dict[str, Any]:
    path_names = _PATH_PARAM.findall(path)
    unknown = sorted(set(op.path) - set(path_names))
    if unknown:
        raise ValueError(f"{path}: no path parameter(s) {', '.join(unknown)}")
    parameters = [_path_param(name, op.path.get(name, STRING)) for name in path_names]
    parameters += [
        # every route reads an empty query value as an absent one
        {"name": name, "in": "query", "required": False, "allowEmptyValue": True, "schema": schema}
        for name, schema in op.query.items()
    ]
    if op.idempotent:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "replays the first answer for the same user, key and body "
                "(24 h); printable ASCII, not blank",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            }
        )
    responses = {str(status): _response(resp) for status, resp in sorted(op.responses.items())}
    for status, resp in _implied(path, op):
        responses.setdefault(str(status), _response(resp))
    operation: dict[str, Any] = {
        "summary": op.summary,
        "tags": list(op.tags),
        "security": _SECURITY[op.auth],
        "parameters": parameters,
        "responses": dict(sorted(responses.items())),
    }
    if op.description:
        operation["description"] = op.description
    if op.rate_limit:
        operation["x-rate-limit"] = op.rate_limit
    if op.body is not None:
        operation["requestBody"] = {
            "required": op.body.required,
            "content": {media: _media(op.body.schema, op.body.example) for media in op.body.media},
        }
    return operation


def _media(schema: Schema, example: Any) -> dict[str, Any]:
    return {"schema": schema} if example is None else {"schema": schema, "example": example}


def _response(resp: Resp) -> dict[str, Any]:
    out: dict[str, Any] = {"description": resp.description}
    if resp.schema is not None:
        out["content"] = {resp.media: {"schema": resp.schema}}
    if resp.headers:
        out["headers"] = {name: {"schema": s} for name, s in resp.headers.items()}
    return out


def _problem(description: str, **headers: Schema) -> Resp:
    return Resp(description, ref("Problem"), PROBLEM, headers=headers)


def _implied(path: str, op: Op) -> list[tuple[int, Resp]]:
    """The error responses an entry's declarations imply (see `openapi_ops`)."""
    implied: list[tuple[int, Resp]] = []
    if op.body is not None or op.query or op.idempotent or _PATH_PARAM.search(path):
        # path parameters too: one holding a control character is refused before the route
        implied.append((400, _problem("VALIDATION_ERROR (with `errors`) or INVALID_JSON")))
    if op.auth is not None:
        implied.append((401, _problem("UNAUTHORIZED: missing, invalid or expired token")))
    if op.auth == "admin":
        implied.append((403, _problem("FORBIDDEN: needs the admin role")))
    if op.auth == "file":
        implied.append((403, _problem("INVALID_SIGNATURE or URL_EXPIRED")))
    if _PATH_PARAM.search(path) or path.startswith("/api/apps/"):
        implied.append((404, _problem("NOT_FOUND (someone else's ids too); APP_DISABLED")))
    if op.idempotent:
        implied.append((409, _problem("IDEMPOTENCY_KEY_IN_USE: the first is still running")))
    if op.body is not None:
        implied.append((413, _problem("PAYLOAD_TOO_LARGE or FILE_TOO_LARGE")))
        implied.append((415, _problem("UNSUPPORTED_MEDIA_TYPE")))
    if op.idempotent:
        implied.append((422, _problem("IDEMPOTENCY_KEY_REUSED with another body")))
    retry_after = {"Retry-After": {"type": "integer"}}
    if op.rate_limit:
        implied.append((429, _problem("RATE_LIMITED", **retry_after)))
    implied.append((431, _problem("REQUEST_HEADERS_TOO_LARGE: request line and headers")))
    # Every API route may meet a dependency outage (never a 500).
    unavailable = ["DATABASE_UNAVAILABLE"] if path.startswith("/api/") else []
    if op.rate_limit:
        unavailable.insert(0, "RATE_LIMITER_UNAVAILABLE (failing closed)")
    if unavailable:
        implied.append((503, _problem(" or ".join(unavailable), **retry_after)))
    implied.append((500, _problem("INTERNAL: logged with the request id, no internals")))
    return implied


def document_bytes(url_map: Map) -> bytes:
    return json.dumps(build_document(url_map), separators=(",", ":")).encode()


@blueprint.get("/openapi.json")
async def openapi_json() -> Response:
    """The document, built on the first request and kept for the app's life."""
    body = current_app.extensions.get(_CACHE_KEY)
    if body is None:
        body = document_bytes(current_app.url_map)
        current_app.extensions[_CACHE_KEY] = body
    return Response(body, content_type=MEDIA_TYPE)
