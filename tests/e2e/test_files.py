"""Uploads and `GET /files/{key}` against the running service (SPEC §10).

Uploads go through the test route `POST /api/_test/upload`, which calls what the apps'
upload routes call (`read_image_upload`, `store_with_thumbnail`, `signed_url`).
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11
import httpx
import pytest
import trio
from PIL import Image

from lumiku.storage.signing import signed_url
from tests.e2e.harness import Service, bearer, make_settings, register, running_service
from tests.unit.storage.images_fixtures import bilevel_png, encode, gps_exif, noise

PROBLEM = "application/problem+json"
MAX_UPLOAD = 10_485_760
GENEROUS = {"LUMIKU_RATELIMIT_REGISTER": "1000/1h"}


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    with trio.fail_after(60):
        async with running_service(make_settings(tmp_path, GENEROUS)) as svc:
            yield svc


def form(parts: list[tuple[str, str | None, bytes]]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body of (name, filename or None for a text field, content),
    written by hand so odd filenames and repeated fields go out as they are."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"\r\nContent-Type: application/octet-stream'
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += content + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def multipart(
    filename: str, data: bytes, fields: dict[str, str] | None = None, file_field: str = "image"
) -> tuple[bytes, dict[str, str]]:
    texts = [(name, None, value.encode()) for name, value in (fields or {}).items()]
    return form([*texts, (file_field, filename, data)])


async def upload(
    service: Service,
    token: str,
    filename: str,
    data: bytes,
    fields: dict[str, str] | None = None,
) -> httpx.Response:
    body, headers = multipart(filename, data, fields)
    return await service.client.post(
        "/api/_test/upload", content=body, headers={**headers, **bearer(token)}
    )


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def stored_files(service: Service) -> list[str]:
    root = Path(service.settings.storage.path)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def open_in_storage(service: Service) -> list[str]:
    """What this process (the in-process service's) holds open under storage.path: the
    spooled uploads are unnamed files there, closed when their request ends."""
    root = os.path.realpath(service.settings.storage.path)
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue  # closed meanwhile (listdir's own fd)
    return [link for link in links if link.startswith(root + "/")]


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def user(service: Service, name: str = "owner") -> tuple[str, str]:
    """(token, user id) of a newly registered user."""
    body = await register(service.client, f"{name}-{uuid.uuid4().hex[:8]}@example.com")
    return body["token"], body["user"]["id"]


async def uploaded(service: Service, token: str) -> dict[str, Any]:
    photo = Image.new("RGB", (640, 480), (200, 30, 30))
    response = await upload(
        service, token, "photo.jpg", encode(photo, "JPEG", exif=gps_exif()), {"name": "Ana"}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


# --- upload and download --------------------------------------------------------------------


async def test_an_upload_downloads_through_both_signed_urls(service: Service) -> None:
    token, user_id = await user(service)
    original = encode(Image.new("RGB", (640, 480), (200, 30, 30)), "JPEG", exif=gps_exif())
    assert b"SpyCam" in original

    response = await upload(service, token, "My Photo.JPG", original, {"name": "Ana"})

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["key"].startswith(f"test/{user_id}/")
    assert body["key"].endswith(".jpg")
    assert body["thumbnail_key"].startswith(f"test/{user_id}/")
    assert (body["width"], body["height"], body["content_type"]) == (640, 480, "image/jpeg")
    assert body["fields"] == {"name": "Ana"}
    assert "My Photo" not in body["key"]
    assert sorted(stored_files(service)) == sorted([body["key"], body["thumbnail_key"]])

    image = await service.client.get(body["url"])
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/jpeg"
    assert image.headers["content-length"] == str(len(image.content)) == str(body["size_bytes"])
    etag = image.headers["etag"]
    assert etag.startswith('"')
    assert not etag.startswith("W/")
    assert image.headers.get_list("x-content-type-options") == ["nosniff"]
    cache = image.headers["cache-control"]
    assert cache.startswith("private, max-age=")
    assert 0 < int(cache.rsplit("=", 1)[1]) <= 3600
    assert b"SpyCam" not in image.content
    assert dict(decoded(image.content).getexif()) == {}
    assert decoded(image.content).size == (640, 480)

    thumb = await service.client.get(body["thumbnail_url"])
    assert thumb.status_code == 200
    assert thumb.headers["content-type"] == "image/jpeg"
    assert thumb.headers["etag"] != etag
    assert decoded(thumb.content).size == (300, 300)


async def test_an_upload_also_reads_after_the_idempotency_key_parsed_the_form(
    service: Service,
) -> None:
    token, _ = await user(service)
    original = encode(noise(300, 300), "PNG")
    body, headers = multipart("a.png", original, {"name": "Ana"})
    response = await service.client.post(
        "/api/_test/upload",
        content=body,
        headers={**headers, **bearer(token), "idempotency-key": str(uuid.uuid4())},
    )
    assert response.status_code == 201, response.text
    assert response.json()["fields"] == {"name": "Ana"}
    stored = await service.client.get(response.json()["url"])
    assert decoded(stored.content).tobytes() == decoded(original).tobytes()


async def test_a_large_file_streams_whole(service: Service) -> None:
    token, _ = await user(service)
    random_pixels = Image.frombytes("RGB", (1400, 1400), os.urandom(1400 * 1400 * 3))
    big = encode(random_pixels, "PNG")  # ~6 MB: many storage chunks
    assert len(big) > 5_000_000
    body = (await upload(service, token, "noise.png", big)).json()
    async with service.client.stream("GET", body["url"]) as response:
        chunks = [chunk async for chunk in response.aiter_raw()]
    assert response.headers["content-length"] == str(body["size_bytes"])
    assert sum(len(c) for c in chunks) == body["size_bytes"]
    assert decoded(b"".join(chunks)).size == (1400, 1400)


async def test_if_none_match_is_304_and_head_sends_headers_only(service: Service) -> None:
    token, _ = await user(service)
    body = await uploaded(service, token)
    first = await service.client.get(body["url"])
    etag = first.headers["etag"]

    again = await service.client.get(body["url"], headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert "content-type" not in again.headers
    listed = await service.client.get(body["url"], headers={"if-none-match": f'"x", W/{etag}'})
    assert listed.status_code == 304
    other = await service.client.get(body["url"], headers={"if-none-match": '"other"'})
    assert other.status_code == 200

    head = await service.client.head(body["url"])
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(first.content))
    assert head.headers["etag"] == etag
    assert head.headers["content-type"] == "image/jpeg"


# --- who may read -----------------------------------------------------------------------------


async def test_an_expired_url_is_403(service: Service) -> None:
    token, _ = await user(service)
    body = await uploaded(service, token)
    stale = signed_url(service.settings, body["key"], now=time.time() - 7200)
    assert_problem(await service.client.get(stale), 403, "URL_EXPIRED")
    # The owner's token does not rescue a bad signature: the signature decides.
    assert_problem(await service.client.get(stale, headers=bearer(token)), 403, "URL_EXPIRED")


async def test_a_tampered_url_is_403(service: Service) -> None:
    owner, _ = await user(service, "owner")
    other, _ = await user(service, "other")
    mine, theirs = await uploaded(service, owner), await uploaded(service, other)
    url = mine["url"]
    flipped = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert_problem(await service.client.get(flipped), 403, "INVALID_SIGNATURE")
    query = urlsplit(url).query
    swapped = f"/files/{theirs['key']}?{query}"  # my signature on their key
    assert_problem(await service.client.get(swapped), 403, "INVALID_SIGNATURE")
    exp = parse_qs(query)["exp"][0]
    longer = url.replace(f"exp={exp}", f"exp={int(exp) + 86_400}")
    assert_problem(await service.client.get(longer), 403, "INVALID_SIGNATURE")
    assert_problem(
        await service.client.get(f"/files/{mine['key']}?sig=abc"), 403, "INVALID_SIGNATURE"
    )


async def test_the_owners_token_reads_without_a_signature(service: Service) -> None:
    token, _ = await user(service)
    body = await uploaded(service, token)
    response = await service.client.get(f"/files/{body['key']}", headers=bearer(token))
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["cache-control"] == "private, no-cache"
    assert response.headers["vary"] == "Authorization"
    assert response.content == (await service.client.get(body["url"])).content


async def test_another_users_key_with_a_token_is_404(service: Service) -> None:
    owner, _ = await user(service, "owner")
    other, _ = await user(service, "other")
    body = await uploaded(service, owner)
    response = await service.client.get(f"/files/{body['key']}", headers=bearer(other))
    assert_problem(response, 404, "NOT_FOUND")


async def test_no_signature_and_no_token_is_401(service: Service) -> None:
    token, _ = await user(service)
    body = await uploaded(service, token)
    assert_problem(await service.client.get(f"/files/{body['key']}"), 401, "UNAUTHORIZED")
    bad_token = bearer("not-a-jwt")
    response = await service.client.get(f"/files/{body['key']}", headers=bad_token)
    assert_problem(response, 401, "UNAUTHORIZED")


async def test_unknown_and_malformed_keys_are_404(service: Service) -> None:
    token, user_id = await user(service)
    missing = f"test/{user_id}/{uuid.uuid4().hex}.png"
    assert_problem(
        await service.client.get(signed_url(service.settings, missing)), 404, "NOT_FOUND"
    )
    response = await service.client.get(f"/files/{missing}", headers=bearer(token))
    assert_problem(response, 404, "NOT_FOUND")
    for bad in [f"test/{user_id}/..%2F..%2Fjwt.secret", f"test/{user_id}/x.txt", "jwt.secret"]:
        response = await service.client.get(f"/files/{bad}", headers=bearer(token))
        assert_problem(response, 404, "NOT_FOUND")


# --- rejected uploads -------------------------------------------------------------------------

PNG_300 = encode(Image.new("RGB", (300, 300), "white"), "PNG")
JPEG_NOISE = encode(noise(600, 600), "JPEG", quality=95)

REJECTIONS = {
    "empty": ("a.png", b"", 400, "FILE_EMPTY"),
    "too large": (
        "a.png",
        PNG_300 + bytes(MAX_UPLOAD + 1 - len(PNG_300)),
        413,
        "FILE_TOO_LARGE",
    ),
    "png named jpg": ("a.jpg", PNG_300, 400, "TYPE_MISMATCH"),
    "html named png": (
        "a.png",
        b"<html><script>alert(1)</script></html>",
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    ),
    "truncated jpeg": ("a.jpg", JPEG_NOISE[: len(JPEG_NOISE) // 2], 400, "CORRUPT_IMAGE"),
    "bomb": ("bomb.png", bilevel_png(10_000, 10_000), 400, "DECOMPRESSION_BOMB"),
    "too small": ("a.png", encode(Image.new("RGB", (100, 100)), "PNG"), 400, "IMAGE_TOO_SMALL"),
    "too wide": ("a.png", encode(Image.new("L", (5000, 300)), "PNG"), 400, "IMAGE_TOO_LARGE"),
    "path in filename": ("../../etc/a.png", PNG_300, 400, "INVALID_FILENAME"),
    "empty filename": ("", PNG_300, 400, "INVALID_FILENAME"),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
async def test_a_rejected_upload_answers_its_code_and_writes_nothing(
    service: Service, case: str
) -> None:
    filename, data, status, code = REJECTIONS[case]
    token, _ = await user(service)
    response = await upload(service, token, filename, data, {"name": "x"})
    assert_problem(response, status, code)
    assert stored_files(service) == []
    assert open_in_storage(service) == []


async def test_form_mistakes_are_refused(service: Service) -> None:
    token, _ = await user(service)
    auth = bearer(token)
    no_image, headers = multipart("a.png", PNG_300, file_field="picture")
    response = await service.client.post(
        "/api/_test/upload", content=no_image, headers={**headers, **auth}
    )
    assert_problem(response, 400, "VALIDATION_ERROR")
    mistakes = {
        "image": [("image", "a.png", PNG_300), ("image", "b.png", PNG_300)],
        "picture": [("image", "a.png", PNG_300), ("picture", "b.png", PNG_300)],
        "name": [("name", None, b"a"), ("name", None, b"b"), ("image", "a.png", PNG_300)],
    }
    for field, parts in mistakes.items():
        body, form_headers = form(parts)
        response = await service.client.post(
            "/api/_test/upload", content=body, headers={**form_headers, **auth}
        )
        problem = assert_problem(response, 400, "VALIDATION_ERROR")
        assert [e["field"] for e in problem["errors"]] == [field], problem
    as_json = await service.client.post("/api/_test/upload", json={"image": "x"}, headers=auth)
    assert_problem(as_json, 415, "UNSUPPORTED_MEDIA_TYPE")
    garbage = await service.client.post(
        "/api/_test/upload",
        content=b"no boundary anywhere",
        headers={"content-type": "multipart/form-data; boundary=zzz", **auth},
    )
    assert_problem(garbage, 400, "VALIDATION_ERROR")  # malformed reads as empty
    anonymous = await service.client.post("/api/_test/upload", content=no_image, headers=headers)
    assert_problem(anonymous, 401, "UNAUTHORIZED")
    assert stored_files(service) == []


# --- body limits ------------------------------------------------------------------------------


async def raw_post(
    service: Service, path: str, headers: dict[str, str], chunks: list[bytes]
) -> tuple[int, dict[str, Any]]:
    """POST over a bare socket (h11): send `chunks` while reading the answer, and stop
    sending once it arrived; (status, JSON body). A server that answers before reading the
    whole body is what this is for (httpx would complain about its unfinished stream)."""
    host, port = service.base_url.removeprefix("http://").rsplit(":", 1)
    http = h11.Connection(h11.CLIENT)
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream, trio.open_nursery() as nursery:

        async def send_body() -> None:
            try:
                for chunk in chunks:
                    await stream.send_all(http.send(h11.Data(data=chunk)))
                await stream.send_all(http.send(h11.EndOfMessage()))
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
                pass  # the server answered and closed: what it said is read below

        request = h11.Request(
            method="POST", target=path, headers=[("host", host), *headers.items()]
        )
        await stream.send_all(http.send(request))
        nursery.start_soon(send_body)
        status, body = 0, b""
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
        nursery.cancel_scope.cancel()
    return status, json.loads(body)


async def test_an_upload_body_over_the_limit_is_413_file_too_large(service: Service) -> None:
    token, _ = await user(service)
    huge = bytes(MAX_UPLOAD + 70 * 1024)  # more than the file limit plus the form allowance
    body, headers = multipart("a.png", huge)
    chunks = [body[start : start + (1 << 20)] for start in range(0, len(body), 1 << 20)]
    auth = bearer(token)
    with trio.fail_after(30):
        status, problem = await raw_post(
            service,
            "/api/_test/upload",
            {**headers, **auth, "content-length": str(len(body))},
            chunks,
        )
        assert (status, problem["code"]) == (413, "FILE_TOO_LARGE")
        status, problem = await raw_post(
            service,
            "/api/_test/upload",
            {**headers, **auth, "transfer-encoding": "chunked"},
            chunks,
        )
        assert (status, problem["code"]) == (413, "FILE_TOO_LARGE")
    assert stored_files(service) == []


async def test_other_routes_keep_the_small_body_limit(service: Service) -> None:
    assert service.settings.http.max_body_bytes == 1_048_576
    body = json.dumps({"x": "y" * 2_000_000}).encode()
    chunks = [body[start : start + 100_000] for start in range(0, len(body), 100_000)]
    json_type = {"content-type": "application/json"}
    with trio.fail_after(30):
        for framing in ({"content-length": str(len(body))}, {"transfer-encoding": "chunked"}):
            status, problem = await raw_post(
                service, "/api/_test/echo", {**json_type, **framing}, chunks
            )
            assert (status, problem["code"]) == (413, "PAYLOAD_TOO_LARGE"), framing


async def test_a_full_disk_is_507_and_writes_nothing(tmp_path: Path) -> None:
    env = {**GENEROUS, "LUMIKU_STORAGE_MIN_FREE_BYTES": str(2**62)}
    with trio.fail_after(60):
        async with running_service(make_settings(tmp_path, env)) as service:
            token, _ = await user(service)
            photo = encode(Image.new("RGB", (300, 300)), "PNG")
            response = await upload(service, token, "a.png", photo)
            assert_problem(response, 507, "INSUFFICIENT_STORAGE")
            assert int(response.headers["retry-after"]) > 0
            assert stored_files(service) == []
