"""The upload body limit: which routes get it, and how the edge applies it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import trio

from lumiku.config import HttpSettings, Settings, StorageSettings
from lumiku.http.middleware import EdgeMiddleware
from lumiku.http.uploads import (
    BODY_LIMIT_SCOPE_KEY,
    FORM_OVERHEAD_BYTES,
    is_upload_path,
    upload_body_limit,
)

SETTINGS = Settings(
    http=HttpSettings(max_body_bytes=1000), storage=StorageSettings(max_upload_bytes=50_000)
)
UPLOAD_LIMIT = 50_000 + FORM_OVERHEAD_BYTES


@pytest.mark.parametrize(
    ("method", "path", "upload"),
    [
        ("POST", "/api/apps/avatar-creator/projects/1/avatars/upload", True),
        ("PUT", "/api/_test/upload", True),
        ("GET", "/api/_test/upload", False),
        ("POST", "/api/_test/upload/", False),
        ("POST", "/api/_test/upload/echo", False),
        ("POST", "/api/_test/uploads", False),
        ("POST", "/api/_test/echo", False),
    ],
)
def test_only_post_or_put_to_a_path_ending_in_upload_is_an_upload(
    method: str, path: str, upload: bool
) -> None:
    assert is_upload_path(method, path) is upload


def test_the_upload_limit_is_the_file_limit_plus_the_form_never_below_the_body_limit() -> None:
    assert upload_body_limit(SETTINGS) == UPLOAD_LIMIT
    small = Settings(
        http=HttpSettings(max_body_bytes=10**7), storage=StorageSettings(max_upload_bytes=10)
    )
    assert upload_body_limit(small) == 10**7


async def call_edge(path: str, length: int) -> tuple[int, dict[str, Any], dict[str, Any] | None]:
    """(status, problem body or {}, the scope the app saw or None when it was not called)."""
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    sent: list[dict[str, Any]] = []

    async def send(message: Any) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "headers": [(b"content-length", str(length).encode())],
        "client": ("127.0.0.1", 5000),
    }
    with trio.fail_after(5):
        await EdgeMiddleware(app, SETTINGS)(scope, receive, send)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body) if body else {}, seen or None


async def test_the_edge_gives_upload_routes_the_upload_limit() -> None:
    status, _, seen = await call_edge("/api/_test/upload", UPLOAD_LIMIT)
    assert status == 204
    assert seen is not None
    assert seen[BODY_LIMIT_SCOPE_KEY] == UPLOAD_LIMIT

    status, problem, seen = await call_edge("/api/_test/upload", UPLOAD_LIMIT + 1)
    assert (status, problem["code"], seen) == (413, "FILE_TOO_LARGE", None)


async def test_the_edge_keeps_the_body_limit_everywhere_else() -> None:
    status, _, seen = await call_edge("/api/_test/echo", 1000)
    assert status == 204
    assert seen is not None
    assert BODY_LIMIT_SCOPE_KEY not in seen
    status, problem, seen = await call_edge("/api/_test/echo", 1001)
    assert (status, problem["code"], seen) == (413, "PAYLOAD_TOO_LARGE", None)
    status, problem, seen = await call_edge("/api/_test/upload/echo", 1001)
    assert (status, problem["code"], seen) == (413, "PAYLOAD_TOO_LARGE", None)
