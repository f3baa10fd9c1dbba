"""The declarative pieces of the OpenAPI document: one `Op` per route (method + path).

A route's documentation is one entry in a table keyed `"METHOD /path/{param}"`:

    "GET /api/credits/balance": Op(
        "The caller's balance", tags=("credits",),
        responses={200: ok(obj({"balance": INTEGER}))},
    ),

`Op.auth` says who may call (`user`, `admin`, `token` for bearer-or-`?token=`, `file` for a
signed URL or the owner's token, None for public); `body` is a `json_body(...)` or a
`multipart(...)`; `rate_limit` names the limiter rule; `idempotent` adds the
Idempotency-Key header. The error responses those imply (401/403, 400/413/415, 404 for
path ids, 429/503, 409/422 for idempotency keys, 431 and 500) are added by the builder
(`lumiku/http/openapi.py`), so an entry lists only its own successes and the errors
peculiar to it (`402: problem("INSUFFICIENT_CREDITS")`).
"""

from __future__ import annotations

from typing import Any, Final, Literal

import attrs

from lumiku.http.openapi_schemas import Schema, body_schema, ref

Auth = Literal["user", "admin", "token", "file"] | None

JSON: Final = "application/json"
PROBLEM: Final = "application/problem+json"


@attrs.frozen
class Resp:
    """One documented response: its schema (None: no body) under `media`."""

    description: str
    schema: Schema | None = None
    media: str = JSON
    headers: dict[str, Schema] = attrs.field(factory=dict)


@attrs.frozen
class Body:
    """A request body: `schema` under each of `media` types."""

    schema: Schema
    media: tuple[str, ...] = (JSON,)
    required: bool = True
    example: dict[str, Any] | None = None  # a valid body, so clients and fuzzers get past 400


@attrs.frozen
class Op:
    summary: str
    tags: tuple[str, ...]
    auth: Auth = "user"
    responses: dict[int, Resp] = attrs.field(factory=dict)
    body: Body | None = None
    query: dict[str, Schema] = attrs.field(factory=dict)
    path: dict[str, Schema] = attrs.field(factory=dict)  # default: a required string
    rate_limit: str | None = None
    idempotent: bool = False
    description: str = ""


def ok(schema: Schema | None, description: str = "OK", **headers: Schema) -> Resp:
    return Resp(description, schema, headers=headers)


def problem(description: str) -> Resp:
    """An error response with the Problem body."""
    return Resp(description, ref("Problem"), PROBLEM)


def json_body(
    cls: type,
    *,
    required: tuple[str, ...] = (),
    rules: dict[str, Schema] | None = None,
    description: str = "",
    example: dict[str, Any] | None = None,
) -> Body:
    """A JSON body structured into the attrs record `cls` (see `body_schema`)."""
    schema = body_schema(cls, required=required, rules=rules, description=description)
    return Body(schema, example=example)


def multipart(properties: dict[str, Schema], required: tuple[str, ...]) -> Body:
    """A `multipart/form-data` upload: its file and text parts."""
    schema: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "required": list(required),
    }
    return Body(schema, ("multipart/form-data",))


IMAGE_PART: Final[Schema] = {
    "type": "string",
    "contentMediaType": "application/octet-stream",
    "description": "a JPEG, PNG or WebP image of 256–4096 px a side, at most "
    "storage.max_upload_bytes; the type comes from its bytes and must match the filename's "
    "extension",
}

PAGE_QUERY: Final[dict[str, Schema]] = {
    "limit": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    "cursor": {"type": "string", "description": "next_cursor of the previous page"},
}
