"""Errors → RFC 9457 problem details (`application/problem+json`).

`ClientError`s and werkzeug's HTTP exceptions (routing 404/405, 413 from the body limit)
become problems with a stable upper-case `code`; anything else is logged with its
traceback and answered 500 `INTERNAL` with the request id and nothing else.
"""

from __future__ import annotations

import json
from typing import Any, Final

from quart import Quart, Response, request
from werkzeug.exceptions import HTTPException

from lumiku.errors import ClientError, MethodNotAllowed, RateLimited, ServiceUnavailable
from lumiku.observability.logging import get_logger, request_id_var

log = get_logger(__name__)

PROBLEM_JSON: Final = "application/problem+json"

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

    @app.errorhandler(Exception)
    async def _other(error: Exception) -> Response:
        return internal_error(error)
