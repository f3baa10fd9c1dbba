"""Safe request input, used by every route: the JSON body, integer query parameters, and
the guard that keeps bad text in query and path parameters away from every route."""

from __future__ import annotations

import re
from typing import Any, Final, TypeVar

import trio
from quart import request

from lumiku.convert import INT_MAX, decode_json, printable, structure, text_problem
from lumiku.errors import FieldError, UnsupportedMediaType, ValidationFailed

T = TypeVar("T")

# Larger bodies are decoded in a worker thread: a hostile megabyte can cost the strict
# decoder's walk most of a second of CPU, which must not stall every other request.
DECODE_IN_THREAD_ABOVE_BYTES: Final = 64 * 1024

_INTEGER: Final = re.compile(r"-?[0-9]+")  # ASCII digits: int() would take "١٢" or " 1_2 "
_INT_DIGITS_MAX: Final = len(str(INT_MAX))


def is_json_type(content_type: str | None) -> bool:
    if not content_type:
        return False
    mime = content_type.split(";", 1)[0].strip().lower()
    return mime == "application/json" or (
        mime.startswith("application/") and mime.endswith("+json")
    )


async def read_json() -> Any:
    """The request's JSON body: 415 when it is not JSON; 400 `INVALID_JSON` when malformed
    or not strict JSON, 400 `VALIDATION_ERROR` naming each field with bad text or an
    out-of-range number (`lumiku.convert.decode_json`).

    The size limit (413) is enforced before this by the edge middleware and quart's
    MAX_CONTENT_LENGTH.
    """
    if not is_json_type(request.headers.get("Content-Type")):
        raise UnsupportedMediaType("Send the body as application/json.")
    raw = await request.get_data(cache=True, as_text=False)
    return await decode_body(raw)


async def decode_body(raw: bytes | str) -> Any:
    """`decode_json(raw)`, in a worker thread when `raw` is large."""
    if len(raw) > DECODE_IN_THREAD_ABOVE_BYTES:
        return await trio.to_thread.run_sync(decode_json, raw)
    return decode_json(raw)


def query_int(name: str, default: int, minimum: int, maximum: int) -> int:
    """An integer query parameter (ASCII digits, optional minus) within bounds;
    ValidationFailed otherwise."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not _INTEGER.fullmatch(raw):
        raise ValidationFailed([FieldError(name, "must be an integer")])
    # Digits beyond an int64's are out of range however many: never converted.
    if len(raw.lstrip("-")) > _INT_DIGITS_MAX or not minimum <= int(raw) <= maximum:
        raise ValidationFailed([FieldError(name, f"must be between {minimum} and {maximum}")])
    return int(raw)


async def refuse_bad_parameters() -> None:
    """`before_request`: 400 VALIDATION_ERROR naming every query or path parameter (or
    parameter name) holding a control character (TAB and newlines included) or a lone
    surrogate, so no route, query or database ever sees one. Unmatched paths are left to
    answer 404."""
    if request.routing_exception is not None:
        return
    problems: dict[str, str] = {}
    view_args = request.view_args or {}
    named = [(k, v) for k, v in view_args.items() if isinstance(v, str)]
    for name, value in [*named, *request.args.items(multi=True)]:
        why = text_problem(name, one_line=True)
        if why is not None:
            problems.setdefault(printable(name), f"parameter name {why}")
        else:
            why = text_problem(value, one_line=True)
            if why is not None:
                problems.setdefault(name, why)
    if problems:
        raise ValidationFailed([FieldError(f, m) for f, m in problems.items()])


async def read_body(cls: type[T]) -> T:
    """The JSON body as a `cls` record: 415/400 as `read_json`, then 400 VALIDATION_ERROR
    naming every wrong, missing or unknown field."""
    return structure(await read_json(), cls)
