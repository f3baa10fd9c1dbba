"""Refusals a client can read: a body over the limit gets its 413 problem although the client
is still sending it, oversized headers get a 431 problem (not a bare status line)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
import trio

from tests.e2e.harness import Service, make_settings, running_service

PROBLEM: Final = "application/problem+json"
TEN_MB: Final = 10_000_000


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    with trio.fail_after(60):
        async with running_service(make_settings(tmp_path)) as svc:
            yield svc


def port(service: Service) -> int:
    return int(service.base_url.rsplit(":", 1)[1])


async def raw_exchange(port: int, head: bytes, body_bytes: int = 0) -> tuple[int, bytes]:
    """Write `head` and then `body_bytes` bytes all of it (as a client that does not read
    while sending), then read until the server closes: (bytes written, everything read).
    A reset anywhere fails the test."""
    with trio.fail_after(30):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(head)
            written = 0
            chunk = b"a" * 65536
            while written < body_bytes:
                piece = chunk[: body_bytes - written]
                await stream.send_all(piece)
                written += len(piece)
            received = b""
            while data := await stream.receive_some(65536):
                received += data
    return written, received


def parse(raw: bytes) -> tuple[int, dict[str, str], dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, json.loads(body)


def assert_problem(
    status: int, headers: dict[str, str] | httpx.Headers, body: dict[str, Any], code: str
) -> None:
    assert status == int(body["status"])
    assert headers["content-type"] == PROBLEM
    assert body["code"] == code
    assert body["request_id"] == headers["x-request-id"]
    assert {"type", "title", "detail"} <= body.keys()


async def test_ten_megabytes_to_login_read_by_httpx(service: Service) -> None:
    response = await service.client.post(
        "/api/auth/login", content=b"x" * TEN_MB, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert_problem(413, response.headers, response.json(), "PAYLOAD_TOO_LARGE")
    # the service goes on serving
    assert (await service.client.get("/health/liveness")).status_code == 200


async def test_ten_megabytes_to_login_written_whole_then_read(service: Service) -> None:
    head = (
        b"POST /api/auth/login HTTP/1.1\r\nHost: lumiku\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % TEN_MB
    )
    written, raw = await raw_exchange(port(service), head, TEN_MB)
    assert written == TEN_MB
    status, headers, body = parse(raw)
    assert status == 413
    assert headers["connection"] == "close"
    assert_problem(status, headers, body, "PAYLOAD_TOO_LARGE")


async def test_chunked_body_over_the_limit_written_whole_then_read(service: Service) -> None:
    """No Content-Length: quart stops at the limit and the route answers 413 while the rest
    is still coming; the edge discards it so the answer arrives intact."""
    size = 4 * 1024 * 1024
    chunk = b"b" * 65536
    framed = (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * (size // len(chunk)) + b"0\r\n\r\n"
    head = (
        b"POST /api/auth/login HTTP/1.1\r\nHost: lumiku\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    _, raw = await raw_exchange(port(service), head + framed)
    status, headers, body = parse(raw)
    assert status == 413
    assert_problem(status, headers, body, "PAYLOAD_TOO_LARGE")


async def test_upload_refused_before_reading_is_readable(service: Service) -> None:
    """An upload without a token is refused (401) before its 5 MB form is read."""
    size = 5 * 1024 * 1024
    head = (
        b"POST /api/_test/upload HTTP/1.1\r\nHost: lumiku\r\n"
        b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: %d\r\n\r\n" % size
    )
    written, raw = await raw_exchange(port(service), head, size)
    assert written == size
    status, headers, body = parse(raw)
    assert status == 401
    assert_problem(status, headers, body, "UNAUTHORIZED")


@pytest.mark.parametrize("header_bytes", [20_000, 200_000])
async def test_oversized_headers_are_a_431_problem(service: Service, header_bytes: int) -> None:
    """20 kB arrive in one read and reach the edge; 200 kB are refused by the server before
    they are complete. Either way the client reads the same problem."""
    head = b"GET /health HTTP/1.1\r\nHost: lumiku\r\nX-Big: %s\r\n\r\n" % (b"h" * header_bytes)
    _, raw = await raw_exchange(port(service), head)
    status, headers, body = parse(raw)
    assert status == 431
    assert headers["connection"] == "close"
    assert_problem(status, headers, body, "REQUEST_HEADERS_TOO_LARGE")
    event = "http.access" if header_bytes < 65536 else "http.refused"
    line = await service.wait_for_log(event=event, status=431)
    assert line["client_ip"] == "127.0.0.1"


async def test_oversized_headers_431_read_by_httpx(service: Service) -> None:
    response = await service.client.get("/health", headers={"x-big": "h" * 20_000})
    assert response.status_code == 431
    assert_problem(431, response.headers, response.json(), "REQUEST_HEADERS_TOO_LARGE")


async def test_malformed_request_is_a_400_problem(service: Service) -> None:
    _, raw = await raw_exchange(port(service), b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n")
    status, headers, body = parse(raw)
    assert status == 400
    assert_problem(status, headers, body, "BAD_REQUEST")
