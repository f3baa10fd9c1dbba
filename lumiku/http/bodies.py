"""Safe request-body parsing, used by every route that reads a body."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from quart import request

from lumiku.convert import structure
from lumiku.errors import FieldError, InvalidJson, UnsupportedMediaType, ValidationFailed

T = TypeVar("T")


def is_json_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


async def read_json() -> Any:
    """The request's JSON body: 415 when it is not JSON, 400 `INVALID_JSON` when malformed.

    The size limit (413) is enforced before this by the edge middleware and quart's
    MAX_CONTENT_LENGTH.
    """
    if not is_json_type(request.headers.get("Content-Type")):
        raise UnsupportedMediaType("Send the body as application/json.")
    raw = await request.get_data(cache=True, as_text=False)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        # RecursionError: nesting deeper than the parser can follow is not JSON we accept.
        position = f" at position {exc.pos}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidJson(f"The body is not valid JSON{position}.") from None


def query_int(name: str, default: int, minimum: int, maximum: int) -> int:
    """An integer query parameter within bounds; ValidationFailed otherwise."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed([FieldError(name, "must be an integer")]) from None
    if not minimum <= value <= maximum:
        raise ValidationFailed([FieldError(name, f"must be between {minimum} and {maximum}")])
    return value


async def read_body(cls: type[T]) -> T:
    """The JSON body as a `cls` record: 415/400 INVALID_JSON as `read_json`, then 400
    VALIDATION_ERROR naming every wrong, missing or unknown field."""
    return structure(await read_json(), cls)
