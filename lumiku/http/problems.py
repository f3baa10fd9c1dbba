"""Errors → RFC 9457 problem details (`application/problem+json`).

`ClientError`s and werkzeug's HTTP exceptions (routing 404/405, 413 from the body limit)
become problems with a stable upper-case `code`. A dependency outage is a problem too,
mapped here so no route needs to know: the database's `Unavailable` → 503
`DATABASE_UNAVAILABLE`, `RedisUnavailable` (a Redis-backed feature with no degraded
behaviour of its own) → 503 `SERVICE_UNAVAILABLE`, both with `Retry-After` and logged as
`http.dependency_unavailable` (at most once a second per dependency). quart-trio answers an
exception group (concurrent calls in one route) as its first member. Anything else is
logged with its traceback and answered 500 `INTERNAL` with the request id and nothing else:
a 500 is always our own bug.
"""

from __future__ import annotations

import json
import time
from typing import Any, Final

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from lumiku.errors import (
    ClientError,
    DatabaseUnavailable,
    MethodNotAllowed,
    RateLimited,
    RedisUnavailable,
    ServiceUnavailable,
    Unavailable,
)
from lumiku.observability.logging import get_logger, request_id_var

log = get_logger(__name__)

PROBLEM_JSON: Final = "application/problem+json"
# Seconds a client is told to wait after a dependency outage.
OUTAGE_RETRY_AFTER_S: Final = 5
LOG_OUTAGE_EVERY_S: Final = 1.0
_outage_logged_at: dict[str, float] = {}
_outage_suppressed: dict[str, int] = {}

_HTTP_CODES: Final = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    408: "REQUEST_TIMEOUT",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def problem_body(
    status: int, code: str, title: str, detail: str | None = None, **extra: Any
) -> bytes:
    """The JSON bytes of one problem; `request_id` comes from the current request."""
    body: dict[str, Any] = {
        "type": f"/problems/{code.lower().replace('_', '-')}",
        "title": title,
        "status": status,
        "detail": detail or title,
        "code": code,
        "request_id": request_id_var.get(),
    }
    body.update(extra)
    return json.dumps(body, default=str).encode()


def problem_response(
    status: int, code: str, title: str, detail: str | None = None, **extra: Any
) -> Response:
    return Response(
        problem_body(status, code, title, detail, **extra), status=status, content_type=PROBLEM_JSON
    )


def from_client_error(error: ClientError) -> Response:
    response = problem_response(error.status, error.code, error.title, error.detail, **error.extra)
    if isinstance(error, RateLimited | ServiceUnavailable):
        response.headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, MethodNotAllowed) and "allowed" in error.extra:
        response.headers["Allow"] = ", ".join(error.extra["allowed"])
    return response


def from_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    code = _HTTP_CODES.get(status, "HTTP_ERROR")
    title = error.name
    detail = {
        404: "No route matches this path.",
        405: f"{request.method} is not allowed here.",
    }.get(status, error.description)
    response = problem_response(status, code, title, detail)
    for name, value in error.get_headers():
        if name.lower() == "allow":
            response.headers["Allow"] = value
    return response


def from_outage(error: Unavailable | RedisUnavailable) -> Response:
    """The 503 problem for a dependency outage that reached a route; logs it (throttled)."""
    answer: ServiceUnavailable
    if isinstance(error, Unavailable):
        dependency, answer = "database", DatabaseUnavailable(OUTAGE_RETRY_AFTER_S)
    else:
        dependency = "redis"
        answer = ServiceUnavailable(
            OUTAGE_RETRY_AFTER_S, "A service this request needs did not answer; retry later."
        )
    now = time.monotonic()
    logged_at = _outage_logged_at.get(dependency)
    if logged_at is not None and now - logged_at < LOG_OUTAGE_EVERY_S:
        _outage_suppressed[dependency] = _outage_suppressed.get(dependency, 0) + 1
    else:
        _outage_logged_at[dependency] = now
        log.warning(
            "http.dependency_unavailable",
            dependency=dependency,
            error=str(error),
            suppressed=_outage_suppressed.pop(dependency, 0),
        )
    return from_client_error(answer)


def internal_error(error: BaseException) -> Response:
    log.error(
        "http.unhandled_exception",
        error_type=type(error).__name__,
        exception="".join(_format(error)),
    )
    return problem_response(
        500,
        "INTERNAL",
        "Internal server error",
        "Something went wrong on our side; quote the request id when reporting it.",
    )


def _format(error: BaseException) -> list[str]:
    import traceback

    return traceback.format_exception(type(error), error, error.__traceback__)


def register_error_handlers(app: Quart) -> None:
    """Install the mapping on `app` (HTTP and websocket handlers alike)."""

    @app.errorhandler(ClientError)
    async def _client(error: ClientError) -> Response:
        return from_client_error(error)

    @app.errorhandler(HTTPException)
    async def _http(error: HTTPException) -> Response:
        return from_http_exception(error)

    @app.errorhandler(Unavailable)
    async def _database(error: Unavailable) -> Response:
        return from_outage(error)

    @app.errorhandler(RedisUnavailable)
    async def _redis(error: RedisUnavailable) -> Response:
        return from_outage(error)

    @app.errorhandler(Exception)
    async def _other(error: Exception) -> Response:
        return internal_error(error)
