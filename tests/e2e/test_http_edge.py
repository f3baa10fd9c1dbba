"""The HTTP edge against the running service on SQLite: problems, ids, headers, CORS, logs."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from tests.e2e.harness import Service, make_settings, running_service
from tests.e2e.wsclient import Closed, connect

PROBLEM = "application/problem+json"
JWT_SECRET = "e2e-Jwt-secret-5f1c9a7b3d2e4f60a8b9c0d1e2f3a4b5"


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    env = {
        "LUMIKU_HTTP_CORS_ORIGINS": "https://app.example.com,https://*.example.org",
        "LUMIKU_HTTP_MAX_BODY_BYTES": "1024",
        "LUMIKU_HTTP_TRUSTED_PROXIES": "127.0.0.0/8",
        "LUMIKU_AUTH_JWT_SECRET": JWT_SECRET,
    }
    with trio.fail_after(30):
        async with running_service(make_settings(tmp_path, env)) as svc:
            yield svc


def assert_problem(response: object, status: int, code: str) -> dict[str, object]:
    import httpx

    assert isinstance(response, httpx.Response)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    assert {"type", "title", "detail"} <= body.keys()
    return dict(body)


async def test_readiness_reports_the_database_on_sqlite(service: Service) -> None:
    response = await service.client.get("/health/readiness")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["database"]["latency_ms"] >= 0
    assert "redis" not in body["checks"]  # no Redis configured: nothing to check


async def test_health_liveness_and_detailed(service: Service) -> None:
    summary = (await service.client.get("/health")).json()
    assert summary["status"] == "ok"
    assert summary["service"] == "lumiku"
    assert summary["environment"] == "test"
    assert (await service.client.get("/health/liveness")).status_code == 200
    detailed = await service.client.get("/health/detailed")
    assert detailed.status_code == 200
    body = detailed.json()
    assert body["status"] == "healthy"
    assert body["checks"]["storage"]["status"] == "ok"
    assert body["checks"]["database"]["schema_current"] is True
    assert body["memory"]["rss_bytes"] > 0
    assert body["queue"] == {
        "counts": {s: 0 for s in ("queued", "running", "succeeded", "failed", "cancelled")},
        "oldest_queued_age_s": None,
    }
    assert body["workers"] == {"busy": 0, "total": 0}  # no apps registered
    assert body["providers"]["status"] == "ok"
    assert body["providers"]["operations"] == dict.fromkeys(
        ("avatar", "pose", "background"), "local"
    )


async def test_malformed_json_is_400_invalid_json(service: Service) -> None:
    response = await service.client.post(
        "/api/_test/echo", content=b'{"a": 1,', headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "INVALID_JSON")


@pytest.mark.parametrize("body", [b"[" * 1020, b"\xff\xfe{}", b""])
async def test_hostile_json_is_400_not_500(service: Service, body: bytes) -> None:
    response = await service.client.post(
        "/api/_test/echo", content=body, headers={"content-type": "application/json"}
    )
    assert_problem(response, 400, "INVALID_JSON")


async def test_wrong_content_type_is_415(service: Service) -> None:
    response = await service.client.post("/api/_test/echo", content=b"a=1")
    assert_problem(response, 415, "UNSUPPORTED_MEDIA_TYPE")


async def test_valid_json_round_trips(service: Service) -> None:
    response = await service.client.post("/api/_test/echo", json={"a": [1, "x"]})
    assert response.status_code == 200
    assert response.json() == {"received": {"a": [1, "x"]}}


async def test_unknown_route_is_404_problem(service: Service) -> None:
    assert_problem(await service.client.get("/api/nope"), 404, "NOT_FOUND")


async def test_wrong_method_is_405_problem(service: Service) -> None:
    response = await service.client.delete("/health/readiness")
    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["allow"]


async def test_oversized_body_is_413_by_content_length(service: Service) -> None:
    response = await service.client.post("/api/_test/echo", json={"x": "y" * 2000})
    assert_problem(response, 413, "PAYLOAD_TOO_LARGE")


async def test_oversized_chunked_body_is_413(service: Service) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"x": "'
        for _ in range(10):
            yield b"y" * 200
        yield b'"}'

    response = await service.client.post(
        "/api/_test/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_problem(response, 413, "PAYLOAD_TOO_LARGE")


async def test_unexpected_exception_is_500_without_internals(service: Service) -> None:
    response = await service.client.get("/api/_test/boom", params={"message": "db-password-xyz"})
    body = assert_problem(response, 500, "INTERNAL")
    assert "db-password-xyz" not in response.text
    assert "RuntimeError" not in response.text
    assert "Traceback" not in response.text
    # ... but the log has the trace, tied to the request id.
    lines = [json.loads(line) for line in service.log_text().splitlines()]
    errors = [line for line in lines if line["event"] == "http.unhandled_exception"]
    assert errors
    assert errors[0]["request_id"] == body["request_id"]
    assert "RuntimeError" in errors[0]["exception"]


@pytest.mark.parametrize("path", ["/health", "/api/nope", "/api/_test/boom"])
async def test_security_headers_on_every_response(service: Service, path: str) -> None:
    response = await service.client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    if path.startswith("/api/"):
        assert response.headers["cache-control"] == "no-store"
    else:
        assert "cache-control" not in response.headers


async def test_valid_request_id_is_echoed(service: Service) -> None:
    response = await service.client.get("/health", headers={"x-request-id": "abc.DEF_123-x"})
    assert response.headers["x-request-id"] == "abc.DEF_123-x"


@pytest.mark.parametrize("bad", ["has space", "x" * 129, "semi;colon", "ünï"])
async def test_invalid_request_id_is_replaced(service: Service, bad: str) -> None:
    response = await service.client.get("/health", headers={"x-request-id": bad.encode()})
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


@pytest.mark.parametrize("origin", ["https://app.example.com", "https://a.b.example.org"])
async def test_cors_allowed_origins(service: Service, origin: str) -> None:
    response = await service.client.get("/health", headers={"origin": origin})
    assert response.headers["access-control-allow-origin"] == origin
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "X-Request-ID" in response.headers["access-control-expose-headers"]
    assert "RateLimit-Remaining" in response.headers["access-control-expose-headers"]


async def test_cors_other_origin_gets_no_cors_headers(service: Service) -> None:
    response = await service.client.get("/health", headers={"origin": "https://evil.example.net"})
    assert response.status_code == 200
    assert not [h for h in response.headers if h.startswith("access-control-")]


async def test_cors_preflight(service: Service) -> None:
    response = await service.client.options(
        "/api/anything",
        headers={
            "origin": "https://x.example.org",
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == "https://x.example.org"
    assert response.headers["access-control-max-age"] == "86400"
    assert "POST" in response.headers["access-control-allow-methods"]
    assert response.headers["access-control-allow-headers"] == "authorization, content-type"
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_cors_preflight_from_unknown_origin_is_not_allowed(service: Service) -> None:
    response = await service.client.options(
        "/api/anything",
        headers={"origin": "https://evil.example.net", "access-control-request-method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-max-age" not in response.headers


async def test_access_line_per_request_with_route_and_client_ip(service: Service) -> None:
    await service.client.get(
        "/health", headers={"x-request-id": "trace-me-1", "x-forwarded-for": "198.51.100.7"}
    )
    line = await service.wait_for_log(event="http.access", request_id="trace-me-1")
    assert [x for x in service.log_lines() if x.get("request_id") == "trace-me-1"] == [line]
    assert line["method"] == "GET"
    assert line["path"] == "/health"
    assert line["route"] == "/health"
    assert line["status"] == 200
    assert line["bytes"] > 0
    assert line["duration_ms"] >= 0
    # the peer (127.0.0.1) is a trusted proxy, so the forwarded client is believed
    assert line["client_ip"] == "198.51.100.7"


async def test_secrets_never_reach_the_logs(service: Service) -> None:
    bearer = "bearer-token-value-77f3e1"
    password = "Password-value-Zq81!"
    response = await service.client.post(
        "/api/_test/echo",
        json={"email": "a@example.com", "password": password},
        headers={"authorization": f"Bearer {bearer}"},
    )
    assert response.status_code == 200
    await service.client.get("/api/_test/boom", params={"message": f"leak {JWT_SECRET}"})
    last = await service.client.get(f"/api/nope?token={bearer}", headers={"authorization": bearer})
    await service.wait_for_log(event="http.access", request_id=last.headers["x-request-id"])
    text = service.log_text()
    assert "test.echo" in text  # the body WAS logged, with the password redacted
    assert "a@example.com" in text
    assert bearer not in text
    assert password not in text
    assert JWT_SECRET not in text
    assert "leak [REDACTED]" in text


async def test_websocket_ping_pong_and_bad_messages(service: Service) -> None:
    async with connect(await service.authed_ws_url()) as ws:
        assert json.loads(await ws.receive())["type"] == "ready"
        await ws.send('{"type":"ping"}')
        assert json.loads(await ws.receive()) == {"type": "pong"}
        await ws.send("not json")
        assert json.loads(await ws.receive())["code"] == "INVALID_JSON"
        await ws.send('{"type":"dance"}')
        assert json.loads(await ws.receive())["code"] == "UNKNOWN_MESSAGE_TYPE"
        await ws.send("[" * 60_000)  # nesting deeper than any parser follows
        assert json.loads(await ws.receive())["code"] == "INVALID_JSON"
        await ws.send('{"type":"ping"}')  # the connection survived
        assert json.loads(await ws.receive()) == {"type": "pong"}


async def test_server_pings_and_a_closed_websocket_does_not_hold_the_drain(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, {"LUMIKU_HTTP_WS_PING_INTERVAL_S": "0.2"})
    with trio.fail_after(30):
        async with running_service(settings) as svc:
            async with connect(await svc.authed_ws_url()) as ws:
                assert json.loads(await ws.receive())["type"] == "ready"
                assert json.loads(await ws.receive()) == {"type": "ping"}
                await ws.send('{"type":"pong"}')  # answered pings need no reply
                assert json.loads(await ws.receive()) == {"type": "ping"}
            closed_at = trio.current_time()
        # the stop (with a 5 s grace) did not wait for the closed websocket
        assert trio.current_time() - closed_at < 1


async def test_an_idle_keep_alive_connection_closes_after_a_post_too(tmp_path: Path) -> None:
    """The idle timer starts inside the last send of a response; a POST (whose body the app
    read) must not cancel it, or the connection stays open and holds the drain."""
    settings = make_settings(tmp_path, {"LUMIKU_HTTP_KEEP_ALIVE_S": "0.5"})
    with trio.fail_after(30):
        async with running_service(settings) as svc:
            host, port = svc.base_url.removeprefix("http://").rsplit(":", 1)
            for method, path, body in (
                ("GET", "/health", b""),
                ("POST", "/api/_test/echo", b'{"hello": "world"}'),
            ):
                stream = await trio.open_tcp_stream(host, int(port))
                async with stream:
                    head = (
                        f"{method} {path} HTTP/1.1\r\nhost: {host}\r\n"
                        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
                    )
                    await stream.send_all(head.encode() + body)
                    received = b""
                    with trio.fail_after(3):  # keep_alive_s is 0.5: closed well before
                        while chunk := await stream.receive_some(65536):
                            received += chunk
                    assert received.startswith(b"HTTP/1.1 200"), (method, received[:200])
            stopping_at = trio.current_time()
        assert trio.current_time() - stopping_at < 2  # no idle connection held the drain


async def test_websocket_closes_with_1001_on_shutdown(service: Service) -> None:
    async with connect(await service.authed_ws_url()) as ws:
        assert json.loads(await ws.receive())["type"] == "ready"
        await ws.send('{"type":"ping"}')
        await ws.receive()
        service.state.request("test")
        with trio.fail_after(5), pytest.raises(Closed) as closed:
            await ws.receive()
        assert closed.value.code == 1001


async def test_edge_probes_answer_head_and_refuse_other_methods(service: Service) -> None:
    head = await service.client.head("/health/liveness")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["x-content-type-options"] == "nosniff"
    response = await service.client.post("/health", json={})
    assert_problem(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "GET, HEAD"
    line = await service.wait_for_log(
        event="http.access", request_id=response.headers["x-request-id"]
    )
    assert (line["route"], line["status"]) == ("/health", 405)


async def test_a_crashing_component_is_logged_and_exits_1(tmp_path: Path) -> None:
    import io

    from quart import Blueprint

    from lumiku import supervisor
    from lumiku.observability import logging as logs

    log = io.StringIO()
    logs.configure("info", "json", stream=log)
    # Two blueprints with one name make the app factory raise: a bug inside start-up.
    clashing = [Blueprint("clash", __name__), Blueprint("clash", __name__)]
    with trio.fail_after(30):
        code = await supervisor.run(make_settings(tmp_path), blueprints=clashing)
    assert code == 1
    lines = [json.loads(line) for line in log.getvalue().splitlines()]
    crashed = [line for line in lines if line["event"] == "service.crashed"]
    assert len(crashed) == 1
    assert "Traceback" in crashed[0]["exception"]
    assert "clash" in crashed[0]["exception"]
    assert lines[-1]["event"] == "service.stopped"


async def test_what_start_up_allocated_is_kept_out_of_full_collections(tmp_path: Path) -> None:
    import gc

    gc.unfreeze()  # whatever an earlier service of this test process froze
    assert gc.get_freeze_count() == 0
    with trio.fail_after(30):
        async with running_service(make_settings(tmp_path)):
            assert gc.get_freeze_count() > 0
