"""The upload body limit: which routes get it, and how the edge applies it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

import attrs
import pytest
import trio
from trio.testing import wait_all_tasks_blocked
from werkzeug.exceptions import RequestEntityTooLarge

from lumiku.config import HttpSettings, Settings, StorageSettings
from lumiku.errors import FileTooLarge
from lumiku.http.middleware import EdgeMiddleware
from lumiku.http.uploads import (
    BODY_LIMIT_SCOPE_KEY,
    FORM_OVERHEAD_BYTES,
    SPOOL_CHUNK_BYTES,
    PacedBody,
    SpoolingFormParser,
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


# --- the form parser: file parts are spooled to disk as they arrive ----------------------

BOUNDARY = "lumiku-test-boundary"
CHUNK_BYTES = 64 * 1024


def multipart_body(fields: dict[str, str], filename: str, content: bytes) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def parser(
    scratch: Path, spooled: list[IO[bytes]], *, max_file_bytes: int, upload_route: bool = True
) -> SpoolingFormParser:
    return SpoolingFormParser(
        scratch_dir=str(scratch),
        max_file_bytes=max_file_bytes,
        spooled=spooled,
        upload_route=upload_route,
        max_content_length=max_file_bytes + FORM_OVERHEAD_BYTES,
        max_form_memory_size=500_000,
        max_form_parts=1000,
    )


@attrs.define
class ChunkedBody:
    """A request body arriving in chunks; before handing out each chunk it records how
    much of what it already handed out is not yet in the spooled file."""

    data: bytes
    spooled: list[IO[bytes]]
    handed_out: int = 0
    most_held_bytes: int = 0

    def __aiter__(self) -> ChunkedBody:
        return self

    async def __anext__(self) -> bytes:
        if self.handed_out >= len(self.data):
            raise StopAsyncIteration
        on_disk = sum(os.fstat(f.fileno()).st_size for f in self.spooled)
        self.most_held_bytes = max(self.most_held_bytes, self.handed_out - on_disk)
        chunk = self.data[self.handed_out : self.handed_out + CHUNK_BYTES]
        self.handed_out += len(chunk)
        await trio.lowlevel.checkpoint()
        return chunk


async def test_a_file_part_goes_to_an_unnamed_file_as_it_arrives(tmp_path: Path) -> None:
    content = os.urandom(3 * 1024 * 1024)
    spooled: list[IO[bytes]] = []
    body = ChunkedBody(multipart_body({"name": "Ava"}, "a.png", content), spooled)
    form, files = await parser(tmp_path, spooled, max_file_bytes=len(content)).parse(
        body,
        "multipart/form-data",
        None,
        {"boundary": BOUNDARY},  # type: ignore[arg-type]
    )
    try:
        assert form.to_dict() == {"name": "Ava"}
        (upload,) = files.getlist("image")
        assert upload.filename == "a.png"
        assert upload.stream is spooled[0]
        assert upload.stream.read() == content
        # never more than a spool chunk (plus the chunk being parsed) held in memory
        assert body.most_held_bytes <= SPOOL_CHUNK_BYTES + 2 * CHUNK_BYTES
        assert os.listdir(tmp_path) == []  # no name in the scratch directory
    finally:
        for file in spooled:
            file.close()


@pytest.mark.parametrize(
    ("upload_route", "refusal"), [(True, FileTooLarge), (False, RequestEntityTooLarge)]
)
async def test_a_body_past_the_limit_is_refused_before_the_rest_is_read(
    tmp_path: Path, upload_route: bool, refusal: type[Exception]
) -> None:
    limit = 1024 * 1024
    spooled: list[IO[bytes]] = []
    body = ChunkedBody(multipart_body({}, "a.png", bytes(4 * limit)), spooled)
    form_parser = parser(tmp_path, spooled, max_file_bytes=limit, upload_route=upload_route)
    form_parser.max_file_bytes = 4 * limit  # only the body limit applies
    with pytest.raises(refusal):
        await form_parser.parse(
            body,
            "multipart/form-data",
            None,
            {"boundary": BOUNDARY},  # type: ignore[arg-type]
        )
    assert body.handed_out <= limit + FORM_OVERHEAD_BYTES + CHUNK_BYTES
    for file in spooled:
        file.close()


async def test_a_file_part_past_the_file_limit_is_file_too_large_at_once(tmp_path: Path) -> None:
    limit = 1024 * 1024
    spooled: list[IO[bytes]] = []
    body = ChunkedBody(multipart_body({}, "a.png", bytes(limit + 1)), spooled)
    with pytest.raises(FileTooLarge):
        await parser(tmp_path, spooled, max_file_bytes=limit).parse(
            body,
            "multipart/form-data",
            None,
            {"boundary": BOUNDARY},  # type: ignore[arg-type]
        )
    assert len(spooled) == 1
    spooled[0].close()


async def test_a_streamed_body_holds_back_the_next_message_until_its_buffer_is_read() -> None:
    body = PacedBody(None, None)
    body.append(b"x" * 100)
    await body.wait_for_room(100)  # not streamed yet: a reader awaiting it whole is not paced
    assert await body.__anext__() == b"x" * 100
    body.append(b"y" * 100)
    waited = trio.Event()

    async def receive_next() -> None:
        await body.wait_for_room(100)
        waited.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receive_next)
            await wait_all_tasks_blocked()
            assert not waited.is_set()  # 100 bytes unread: the next message waits
            assert await body.__anext__() == b"y" * 100
            await wait_all_tasks_blocked()
            assert waited.is_set()
    body.append(b"z" * 100)
    body.set_complete()
    await body.wait_for_room(100)  # complete: nothing more to hold back
