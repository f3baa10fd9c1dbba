"""JSON Schema (2020-12) for the OpenAPI document: request bodies derived from the attrs
records the routes structure bodies into, and the shared response components.

`body_schema(cls, ...)` reads the record's fields (names, JSON types, which are required),
so a renamed or added field changes the document with the code; the rules the
`validate_*` functions apply on top (lengths, enums, ranges) are laid over it by name, and
naming a field the record lacks is an error at build time, never a silent stale entry.

Text lengths are counted after trimming and collapsing whitespace (SPEC §8), so they are
stated in descriptions rather than as `minLength`/`maxLength`, which would count the raw
characters; enums, integer ranges and array sizes are exact and stated as keywords.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Final

import attrs

Schema = dict[str, Any]

_SCALARS: Final[dict[Any, str]] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def type_schema(annotation: Any) -> Schema:
    """The JSON Schema of one field annotation (str, int, float, bool, optional, arrays)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) != 1:
            raise TypeError(f"no JSON Schema for {annotation!r}: one type or None, please")
        inner = type_schema(options[0])
        if isinstance(inner.get("type"), str):
            return {**inner, "type": [inner["type"], "null"]}
        return {"anyOf": [inner, {"type": "null"}]}
    if origin in (list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return {"type": "array", "items": type_schema(args[0]) if args else {}}
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    if annotation is Any:
        return {}
    raise TypeError(f"no JSON Schema for {annotation!r}")


def body_schema(
    cls: type,
    *,
    required: tuple[str, ...] = (),
    rules: dict[str, Schema] | None = None,
    description: str = "",
) -> Schema:
    """The schema of a JSON body structured into the attrs record `cls`: one property per
    field (unknown ones refused), fields without a default required, plus `required`
    (fields the validator demands although the record lets them default) and `rules`
    (keywords laid over a field's schema)."""
    hints = typing.get_type_hints(cls)
    fields = attrs.fields(cls)
    names = {f.alias or f.name for f in fields}
    rules = rules or {}
    unknown = sorted((set(rules) | set(required)) - names)
    if unknown:
        raise ValueError(f"{cls.__qualname__} has no field(s) {', '.join(unknown)}")
    properties = {
        (f.alias or f.name): {**type_schema(hints[f.name]), **rules.get(f.alias or f.name, {})}
        for f in fields
    }
    needed = [
        (f.alias or f.name)
        for f in fields
        if f.default is attrs.NOTHING or (f.alias or f.name) in required
    ]
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if needed:
        schema["required"] = needed
    if description:
        schema["description"] = description
    return schema


def text(chars: str) -> Schema:
    """A text rule stated in words: `chars` like "1–100" (after trimming/collapsing)."""
    return {"description": f"{chars} characters after trimming and collapsing whitespace"}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None) -> Schema:
    """An object with `required` properties (more may be added by later versions)."""
    return {
        "type": "object",
        "properties": {**required, **(optional or {})},
        "required": list(required),
    }


def array(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


STRING: Final[Schema] = {"type": "string"}
INTEGER: Final[Schema] = {"type": "integer"}
NUMBER: Final[Schema] = {"type": "number"}
BOOLEAN: Final[Schema] = {"type": "boolean"}
OBJECT: Final[Schema] = {"type": "object"}
UUID: Final[Schema] = {"type": "string", "format": "uuid"}
TIME: Final[Schema] = {"type": "string", "format": "date-time"}
CURSOR: Final[Schema] = {"type": ["string", "null"], "description": "null on the last page"}

_FIELD_ERROR: Final = obj({"field": STRING, "message": STRING})

COMPONENTS: Final[dict[str, Schema]] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; `code` is stable and upper-case. "
        "VALIDATION_ERROR adds `errors`; INSUFFICIENT_CREDITS adds `required` and "
        "`available`; JOB_FINISHED adds `job`.",
        "properties": {
            "type": STRING,
            "title": STRING,
            "status": INTEGER,
            "detail": STRING,
            "code": {"type": "string", "pattern": "^[A-Z][A-Z0-9_]*$"},
            "request_id": {"type": ["string", "null"]},
            "errors": array(_FIELD_ERROR),
        },
        "required": ["type", "title", "status", "detail", "code", "request_id"],
    },
    "User": obj(
        {
            "id": UUID,
            "email": STRING,
            "name": {"type": ["string", "null"]},
            "role": {"type": "string", "enum": ["user", "admin"]},
            "tags": array(STRING),
            "created_at": TIME,
        }
    ),
    "Job": obj(
        {
            "id": UUID,
            "kind": STRING,
            "app": STRING,
            "user_id": UUID,
            "status": {
                "type": "string",
                "enum": ["queued", "running", "succeeded", "failed", "cancelled"],
            },
            "cancel_requested": BOOLEAN,
            "priority": INTEGER,
            "payload": {},
            "attempt": INTEGER,
            "max_attempts": INTEGER,
            "run_after": TIME,
            "progress": OBJECT,
            "result": {},
            "error": nullable(obj({"code": STRING, "message": STRING, "retryable": BOOLEAN})),
            "cost": INTEGER,
            "refunded": INTEGER,
            "request_id": {"type": ["string", "null"]},
            "created_at": TIME,
            "updated_at": TIME,
        }
    ),
    "JobPage": obj({"jobs": array(ref("Job")), "next_cursor": CURSOR}),
    "CreditEntry": obj(
        {
            "id": INTEGER,
            "user_id": UUID,
            "delta": INTEGER,
            "balance_after": {"type": "integer", "minimum": 0},
            "kind": {
                "type": "string",
                "enum": ["welcome", "grant", "purchase", "charge", "refund", "adjustment"],
            },
            "ref_type": {"type": ["string", "null"]},
            "ref_id": {"type": ["string", "null"]},
            "note": {"type": ["string", "null"]},
            "created_at": TIME,
        }
    ),
    "Session": obj({"user": ref("User"), "token": STRING}),
}
