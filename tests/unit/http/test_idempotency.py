"""`read_idempotency`: the key's validation and what counts as the same request."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from quart import request
from quart_trio import QuartTrio

from lumiku.http.bodies import read_json
from lumiku.http.idempotency import HEADER, read_idempotency
from lumiku.http.problems import register_error_handlers


def make_app() -> QuartTrio:
    """Routes answering what the helper saw, and what the route could still read after it."""
    app = QuartTrio("idempotency-test")
    register_error_handlers(app)

    @app.route("/json", methods=["POST", "PUT"])
    @app.post("/other")
    async def json_route() -> dict[str, Any]:
        key = await read_idempotency()
        return {"key": key.key, "hash": key.request_hash, "body": await read_json()}

    @app.post("/raw")
    async def raw_route() -> dict[str, Any]:
        key = await read_idempotency()
        return {"key": key.key, "hash": key.request_hash, "size": len(await request.get_data())}

    @app.post("/form")
    async def form_route() -> dict[str, Any]:
        key = await read_idempotency()
        files = await request.files
        return {
            "hash": key.request_hash,
            "fields": (await request.form).to_dict(flat=False),
            "files": {name: f.read().decode() for name, f in files.items()},
        }

    return app


async def post_json(path: str, raw: str, key: str = "k-1", **kw: Any) -> dict[str, Any]:
    client = make_app().test_client()
    response = await client.post(
        path,
        data=raw.encode(),
        headers={"Content-Type": "application/json", HEADER: key},
        **kw,
    )
    assert response.status_code == 200, await response.get_data()
    body: dict[str, Any] = await response.get_json()
    return body


async def refusal(headers: Any) -> dict[str, Any]:
    client = make_app().test_client()
    response = await client.post("/json", json={"a": 1}, headers=headers)
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = await response.get_json()
    return body


async def test_without_a_key_there_is_no_hash_and_the_body_is_still_readable() -> None:
    client = make_app().test_client()
    response = await client.post("/json", json={"a": 1})
    assert await response.get_json() == {"key": None, "hash": None, "body": {"a": 1}}


async def test_json_bodies_equal_as_json_hash_the_same() -> None:
    first = await post_json(
        "/json", '{"prompt": "caf\\u00e9", "n": [1, 2], "opts": {"x": 1, "y": 2}}'
    )
    same = await post_json("/json", '{ "opts":{"y":2,"x":1},"n":[1,2],\n"prompt":"café" }')
    assert first["key"] == same["key"] == "k-1"
    assert first["body"] == same["body"]  # the route still read the body
    assert first["hash"] == same["hash"]
    assert len(first["hash"]) == 64
    int(first["hash"], 16)


@pytest.mark.parametrize(
    ("path", "raw", "kw"),
    [
        ("/json", '{"prompt": "cafe", "n": [1, 2], "opts": {"x": 1, "y": 2}}', {}),  # a value
        ("/json", '{"prompt": "café", "n": [2, 1], "opts": {"x": 1, "y": 2}}', {}),  # order
        ("/json", '{"prompt": "café", "n": [1, 2], "opts": {"x": 1}}', {}),  # a key less
        ("/other", '{"prompt": "café", "n": [1, 2], "opts": {"x": 1, "y": 2}}', {}),  # path
        (
            "/json",
            '{"prompt": "café", "n": [1, 2], "opts": {"x": 1, "y": 2}}',
            {"query_string": {"seed": "1"}},
        ),
    ],
)
async def test_another_request_hashes_differently(path: str, raw: str, kw: dict[str, Any]) -> None:
    reference = await post_json(
        "/json", '{"prompt": "café", "n": [1, 2], "opts": {"x": 1, "y": 2}}'
    )
    assert (await post_json(path, raw, **kw))["hash"] != reference["hash"]


async def test_the_method_and_the_query_order() -> None:
    client = make_app().test_client()
    headers = {HEADER: "k"}
    post = await client.post("/json?a=1&b=2", json={}, headers=headers)
    put = await client.put("/json?a=1&b=2", json={}, headers=headers)
    swapped = await client.post("/json?b=2&a=1", json={}, headers=headers)
    repeated = await client.post("/json?a=1&a=2&b=2", json={}, headers=headers)
    hashes = [(await r.get_json())["hash"] for r in (post, put, swapped, repeated)]
    assert hashes[0] != hashes[1]
    assert hashes[0] == hashes[2]  # parameters are sorted by name
    assert hashes[0] != hashes[3]


async def test_the_key_is_compared_exactly_and_does_not_change_the_hash() -> None:
    lower = await post_json("/json", "{}", key="abc")
    upper = await post_json("/json", "{}", key="ABC")
    assert (lower["key"], upper["key"]) == ("abc", "ABC")
    assert lower["hash"] == upper["hash"]  # the key is scoped per user, not hashed
    longest = await post_json("/json", "{}", key="k" * 255)
    assert longest["key"] == "k" * 255


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({HEADER: "k" * 256}, "at most 255"),
        ({HEADER: ""}, "empty"),
        ({HEADER: "   "}, "empty"),
        ({HEADER: "clé"}, "printable ASCII"),
        ({HEADER: "a\tb"}, "printable ASCII"),
        ([(HEADER, "one"), (HEADER, "two")], "once"),
    ],
)
async def test_bad_keys_are_refused_naming_the_header(headers: Any, message: str) -> None:
    body = await refusal(headers)
    assert body["code"] == "VALIDATION_ERROR"
    [error] = body["errors"]
    assert error["field"] == "Idempotency-Key"
    assert message in error["message"]


async def test_a_malformed_json_body_is_still_the_routes_invalid_json() -> None:
    client = make_app().test_client()
    response = await client.post(
        "/json", data=b'{"a": ', headers={"Content-Type": "application/json", HEADER: "k"}
    )
    assert response.status_code == 400
    assert (await response.get_json())["code"] == "INVALID_JSON"


async def test_other_bodies_hash_their_bytes_and_media_type() -> None:
    client = make_app().test_client()

    async def post(data: bytes, content_type: str) -> dict[str, Any]:
        response = await client.post(
            "/raw", data=data, headers={"Content-Type": content_type, HEADER: "k"}
        )
        body: dict[str, Any] = await response.get_json()
        assert body["size"] == len(data)  # the route still has the bytes
        return body

    first = await post(b"\x00\x01image", "image/png")
    assert (await post(b"\x00\x01image", "image/png"))["hash"] == first["hash"]
    assert (await post(b"\x00\x01image", "IMAGE/PNG; q=1"))["hash"] == first["hash"]
    assert (await post(b"\x00\x02image", "image/png"))["hash"] != first["hash"]
    assert (await post(b"\x00\x01image", "image/jpeg"))["hash"] != first["hash"]


def multipart(
    boundary: str, fields: list[tuple[str, str]], files: list[tuple[str, str, bytes]]
) -> bytes:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields
    ]
    parts += [
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'
        ).encode()
        + content
        + b"\r\n"
        for name, filename, content in files
    ]
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


async def test_uploads_hash_their_fields_and_files_not_the_random_boundary() -> None:
    client = make_app().test_client()

    async def upload(
        boundary: str, fields: list[tuple[str, str]], content: bytes = b"PNG-bytes"
    ) -> dict[str, Any]:
        response = await client.post(
            "/form",
            data=multipart(boundary, fields, [("photo", "me.png", content)]),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}", HEADER: "k"},
        )
        assert response.status_code == 200, await response.get_data()
        body: dict[str, Any] = await response.get_json()
        return body

    first = await upload("aaaa1111", [("name", "me"), ("style", "a"), ("style", "b")])
    assert first["fields"] == {"name": ["me"], "style": ["a", "b"]}
    assert first["files"] == {"photo": "PNG-bytes"}  # rewound for the route
    retried = await upload("bbbb2222", [("style", "a"), ("style", "b"), ("name", "me")])
    assert retried["hash"] == first["hash"]
    assert (await upload("cccc", [("name", "me"), ("style", "b"), ("style", "a")]))[
        "hash"
    ] != first["hash"]
    other_file = await upload("dddd", [("name", "me"), ("style", "a"), ("style", "b")], b"other")
    assert other_file["hash"] != first["hash"]


async def test_the_hash_is_sha256_of_a_documented_canonical_form() -> None:
    """Pin the definition: changing it breaks live keys' replays, so it must be deliberate."""
    got = await post_json("/json", '{"b": [1, {"d": null, "c": "é"}], "a": true}')
    document = {
        "body": {"json": {"a": True, "b": [1, {"c": "é", "d": None}]}},
        "method": "POST",
        "path": "/json",
        "query": [],
        "v": 1,
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    assert got["hash"] == hashlib.sha256(canonical.encode()).hexdigest()
