"""`lumiku.http.bodies` on a small quart app: the strict JSON body, integer query
parameters, and the guard on query and path parameters."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from quart_trio import QuartTrio

from lumiku.http.bodies import (
    DECODE_IN_THREAD_ABOVE_BYTES,
    query_int,
    read_body,
    read_json,
    refuse_bad_parameters,
)
from lumiku.http.problems import register_error_handlers


@attrs.frozen
class Body:
    name: str
    count: int = 0


def make_app() -> QuartTrio:
    app = QuartTrio("bodies-test")
    register_error_handlers(app)
    app.before_request(refuse_bad_parameters)

    @app.post("/json")
    async def json_route() -> dict[str, Any]:
        return {"body": await read_json()}

    @app.post("/typed")
    async def typed_route() -> dict[str, Any]:
        return {"body": attrs.asdict(await read_body(Body))}

    @app.get("/items/<item>")
    async def item_route(item: str) -> dict[str, Any]:
        return {"item": item, "limit": query_int("limit", 20, 1, 100)}

    return app


async def problem(response: Any, status: int = 400) -> dict[str, Any]:
    assert response.status_code == status, await response.get_data()
    assert response.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = await response.get_json()
    return body


async def post(path: str, raw: bytes) -> Any:
    client = make_app().test_client()
    return await client.post(path, data=raw, headers={"Content-Type": "application/json"})


async def test_a_strict_json_body_passes() -> None:
    response = await post("/json", '{"a": "é\\n", "n": [1, 2.5, null, true]}'.encode())
    assert (await response.get_json()) == {"body": {"a": "é\n", "n": [1, 2.5, None, True]}}


async def test_a_large_body_is_decoded_off_the_event_loop_with_the_same_rules() -> None:
    items = ",".join(['"item"'] * (DECODE_IN_THREAD_ABOVE_BYTES // 7))
    response = await post("/json", f'{{"a": [{items}]}}'.encode())
    assert len((await response.get_json())["body"]["a"]) == DECODE_IN_THREAD_ABOVE_BYTES // 7
    body = await problem(await post("/json", f'{{"a": [{items}, "\\u0000"]}}'.encode()))
    assert [e["field"] for e in body["errors"]] == [f"a.{DECODE_IN_THREAD_ABOVE_BYTES // 7}"]


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": -Infinity}',
        b'{"a": 1, "a": 1}',
        b"[" * 100_000 + b"]" * 100_000,
        b"\xed\xa0\x80",
        b"{",
    ],
)
async def test_not_strict_json_is_invalid_json(raw: bytes) -> None:
    body = await problem(await post("/json", raw))
    assert body["code"] == "INVALID_JSON"


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"name": "\\ud800"}', "name"),
        (b'{"name": "a\\u0000b"}', "name"),
        (b'{"name": "ok", "count": 1' + b"0" * 5000 + b"}", "count"),
        (b'{"name": "ok", "count": 1e999}', "count"),
    ],
)
async def test_bad_text_and_numbers_are_validation_errors_naming_the_field(
    raw: bytes, field: str
) -> None:
    for path in ("/json", "/typed"):
        body = await problem(await post(path, raw))
        assert body["code"] == "VALIDATION_ERROR"
        assert [e["field"] for e in body["errors"]] == [field]


async def test_a_typed_body_still_names_wrong_and_unknown_fields() -> None:
    body = await problem(await post("/typed", b'{"name": 1, "extra": true}'))
    assert sorted(e["field"] for e in body["errors"]) == ["extra", "name"]


@pytest.mark.parametrize(
    ("limit", "message"),
    [
        ("0", "must be between 1 and 100"),
        ("101", "must be between 1 and 100"),
        ("1" + "0" * 5000, "must be between 1 and 100"),
        ("-" + "9" * 30, "must be between 1 and 100"),
        ("ten", "must be an integer"),
        ("1_0", "must be an integer"),
        (" 10", "must be an integer"),
        ("١٠", "must be an integer"),  # Arabic-Indic digits: int() would take them
    ],
)
async def test_query_int_refuses_what_is_not_an_ascii_integer_in_range(
    limit: str, message: str
) -> None:
    client = make_app().test_client()
    body = await problem(await client.get("/items/x", query_string={"limit": limit}))
    assert body["errors"] == [{"field": "limit", "message": message}]


async def test_query_int_takes_an_integer_in_range() -> None:
    client = make_app().test_client()
    response = await client.get("/items/x", query_string={"limit": "-0"})
    assert response.status_code == 400
    response = await client.get("/items/x", query_string={"limit": "100"})
    assert (await response.get_json()) == {"item": "x", "limit": 100}


@pytest.mark.parametrize("bad", ["\x00", "\t", "\n", "\x1b", "\x85"])
async def test_bad_query_values_and_names_are_refused_before_the_route(bad: str) -> None:
    client = make_app().test_client()
    body = await problem(await client.get("/items/x", query_string={"q": f"a{bad}"}))
    assert body["code"] == "VALIDATION_ERROR"
    assert [e["field"] for e in body["errors"]] == ["q"]
    body = await problem(await client.get("/items/x", query_string={f"q{bad}": "a"}))
    (error,) = body["errors"]
    assert error["field"] == f"q\\u{ord(bad):04x}"
    assert error["message"].startswith("parameter name ")


@pytest.mark.parametrize("escaped", ["%00", "%09", "a%0Ab", "%C2%85"])
async def test_bad_path_parameters_are_refused_before_the_route(escaped: str) -> None:
    client = make_app().test_client()
    body = await problem(await client.get(f"/items/{escaped}"))
    assert body["code"] == "VALIDATION_ERROR"
    assert [e["field"] for e in body["errors"]] == ["item"]


async def test_surrogates_in_a_url_arrive_replaced_not_as_surrogates() -> None:
    # A URL carries UTF-8 bytes; a surrogate's bytes are not UTF-8 and decode as U+FFFD.
    client = make_app().test_client()
    response = await client.get("/items/%ED%A0%80")
    assert response.status_code == 200
    assert (await response.get_json())["item"] == "\ufffd" * 3


async def test_an_unknown_path_stays_404() -> None:
    client = make_app().test_client()
    body = await problem(await client.get("/nowhere", query_string={"q": "\x00"}), 404)
    assert body["code"] == "NOT_FOUND"
