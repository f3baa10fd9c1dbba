"""Buying credits end to end (SPEC §11) on both backends: the real service, a fake Duitku
server, callbacks posted the way Duitku posts them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from lumiku.payments.duitku import md5_hex
from tests.e2e.fake_duitku import (
    API_KEY,
    MERCHANT,
    FakeDuitku,
    post_callback,
    running_fake_duitku,
)
from tests.e2e.harness import Service, bearer, make_settings, register, running_service

WELCOME = 100
STARTER = {"id": "starter", "credits": 100, "price_idr": 15000}


@contextlib.asynccontextmanager
async def payment_service(
    tmp_path: Path, database_url: str, mode: str = "ok", **env: str
) -> AsyncIterator[tuple[Service, FakeDuitku]]:
    with trio.fail_after(60):
        async with running_fake_duitku(mode) as fake:
            settings = make_settings(
                tmp_path,
                {
                    "LUMIKU_DATABASE_URL": database_url,
                    "LUMIKU_PAYMENTS_ENABLED": "true",
                    "LUMIKU_DUITKU_MERCHANT_CODE": MERCHANT,
                    "LUMIKU_DUITKU_API_KEY": API_KEY,
                    "LUMIKU_DUITKU_BASE_URL": fake.base_url,
                    "LUMIKU_DUITKU_CALLBACK_URL": "https://api.example.test/api/payment/duitku/callback",
                    "LUMIKU_DUITKU_RETURN_URL": "https://app.example.test/paid",
                    "LUMIKU_DUITKU_IP_ALLOWLIST": "127.0.0.1/32",
                    "LUMIKU_DUITKU_TIMEOUT_S": "1",
                    "LUMIKU_PROVIDERS_BREAKER_FAILURES": "3",
                    **env,
                },
            )
            async with running_service(settings, blueprints=[]) as svc:
                yield svc, fake


async def buyer(svc: Service, email: str = "buyer@example.com") -> dict[str, str]:
    return bearer((await register(svc.client, email))["token"])


async def create(svc: Service, auth: dict[str, str], **body: Any) -> httpx.Response:
    return await svc.client.post(
        "/api/payment/duitku/create", json={"package_id": "starter", **body}, headers=auth
    )


async def samples(svc: Service) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The payment series of /metrics: (sample name, labels) → value."""
    response = await svc.client.get("/metrics")
    assert response.status_code == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        if "payment" in family.name or "purchased" in family.name
        for sample in family.samples
        if sample.name.endswith("_total")
    }


async def balance(svc: Service, auth: dict[str, str]) -> int:
    response = await svc.client.get("/api/credits/balance", headers=auth)
    return int(response.json()["balance"])


async def test_create_signs_the_server_side_price(tmp_path: Path, database_url: str) -> None:
    async with payment_service(tmp_path, database_url) as (svc, fake):
        listed = await svc.client.get("/api/payment/packages")
        assert listed.status_code == 200
        assert listed.json()["packages"][0] == STARTER
        auth = await buyer(svc)
        response = await create(svc, auth)
        assert response.status_code == 201, response.text
        body = response.json()
        order_id = body["merchant_order_id"]
        assert body["amount"] == STARTER["price_idr"]
        assert body["credits"] == STARTER["credits"]
        assert body["payment_url"].startswith("https://pay.example.test/")
        assert fake.paths == ["/webapi/api/merchant/v2/inquiry"]
        sent = fake.inquiries[0]
        assert sent["merchantCode"] == MERCHANT
        assert sent["merchantOrderId"] == order_id
        assert sent["paymentAmount"] == STARTER["price_idr"]
        assert sent["signature"] == md5_hex(MERCHANT, order_id, STARTER["price_idr"], API_KEY)
        assert sent["paymentMethod"] == "VC"
        assert sent["email"] == "buyer@example.com"
        status = await svc.client.get(f"/api/payment/status/{order_id}", headers=auth)
        assert status.status_code == 200
        assert status.json()["status"] == "pending"
        assert status.json()["reference"] == body["reference"]

        # The client cannot name a price or an amount of credits: extra fields are refused.
        for extra in ({"amount": 1}, {"price_idr": 1}, {"credits": 100000}):
            refused = await create(svc, auth, **extra)
            assert refused.status_code == 400, refused.text
            assert refused.json()["code"] == "VALIDATION_ERROR"
        unknown = await create(svc, auth, package_id="free")
        assert unknown.status_code == 400
        assert unknown.json()["errors"][0]["field"] == "package_id"
        assert (await create(svc, auth, payment_method="bad method")).status_code == 400
        assert len(fake.inquiries) == 1  # nothing refused reached Duitku
        anonymous = await svc.client.post(
            "/api/payment/duitku/create", json={"package_id": "starter"}
        )
        assert anonymous.status_code == 401


async def test_a_callback_replayed_concurrently_credits_once(
    tmp_path: Path, database_url: str
) -> None:
    async with payment_service(tmp_path, database_url) as (svc, _fake):
        auth = await buyer(svc)
        order_id = (await create(svc, auth)).json()["merchant_order_id"]
        fields = FakeDuitku.callback_fields(order_id, STARTER["price_idr"])
        replies: list[httpx.Response] = []

        async def send() -> None:
            replies.append(await post_callback(svc.client, fields))

        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(send)
        assert [(r.status_code, r.text) for r in replies] == [(200, "SUCCESS")] * 10
        assert all(r.headers["content-type"].startswith("text/plain") for r in replies)
        assert sorted(r.headers["x-outcome"] for r in replies) == ["already_credited"] * 9 + [
            "credited"
        ]
        assert await balance(svc, auth) == WELCOME + STARTER["credits"]
        history = (await svc.client.get("/api/credits/history", headers=auth)).json()
        purchases = [e for e in history["entries"] if e["kind"] == "purchase"]
        assert [(e["delta"], e["ref_id"]) for e in purchases] == [(STARTER["credits"], order_id)]
        status = await svc.client.get(f"/api/payment/status/{order_id}", headers=auth)
        assert status.json()["status"] == "success"
        assert status.json()["paid_at"]
        assert await samples(svc) == {
            ("lumiku_payments_total", (("outcome", "created"),)): 1,
            ("lumiku_payments_total", (("outcome", "credited"),)): 1,
            ("lumiku_payments_total", (("outcome", "already_credited"),)): 9,
            ("lumiku_credits_purchased_total", ()): STARTER["credits"],
        }
        # JSON callbacks are accepted too (a replay here: still credited once).
        as_json = await svc.client.post("/api/payment/duitku/callback", json=fields)
        assert (as_json.status_code, as_json.text) == (200, "SUCCESS")
        assert await balance(svc, auth) == WELCOME + STARTER["credits"]


async def test_bad_callbacks_are_refused_and_credit_nothing(
    tmp_path: Path, database_url: str
) -> None:
    async with payment_service(tmp_path, database_url) as (svc, _fake):
        auth = await buyer(svc)
        order_id = (await create(svc, auth)).json()["merchant_order_id"]
        price = STARTER["price_idr"]
        cases = {
            "signature": (FakeDuitku.callback_fields(order_id, price, signature="0" * 32), 400),
            "wrong key": (FakeDuitku.callback_fields(order_id, price, key="guessed"), 400),
            "amount": (FakeDuitku.callback_fields(order_id, price - 1), 400),
            "merchant": (FakeDuitku.callback_fields(order_id, price, merchant="D9999"), 400),
            "unknown order": (FakeDuitku.callback_fields("LMK-unknown", price), 404),
        }
        for name, (fields, expected) in cases.items():
            response = await post_callback(
                svc.client, fields, {"X-Request-ID": f"cb-{name.replace(' ', '-')}"}
            )
            assert response.status_code == expected, (name, response.text)
            assert response.headers["content-type"] == "application/problem+json"
        fields = FakeDuitku.callback_fields(order_id, price)
        missing = dict(fields)
        del missing["signature"]
        assert (await post_callback(svc.client, missing)).status_code == 400
        wrong_type = await svc.client.post(
            "/api/payment/duitku/callback", content=b"x", headers={"content-type": "text/plain"}
        )
        assert wrong_type.status_code == 415
        not_json = await svc.client.post(
            "/api/payment/duitku/callback",
            content=b'{"merchantCode": ',
            headers={"content-type": "application/json", "X-Request-ID": "cb-not-json"},
        )
        assert (not_json.status_code, not_json.json()["code"]) == (400, "INVALID_JSON")
        not_an_object = await svc.client.post("/api/payment/duitku/callback", json=[fields])
        assert not_an_object.status_code == 400
        assert await balance(svc, auth) == WELCOME
        status = await svc.client.get(f"/api/payment/status/{order_id}", headers=auth)
        assert status.json()["status"] == "pending"
        rejected = await svc.wait_for_log(
            event="payment.callback_rejected", request_id="cb-signature"
        )
        assert rejected["reason"] == "signature"
        assert rejected["client_ip"] == "127.0.0.1"
        await svc.wait_for_log(event="payment.callback_rejected", request_id="cb-unknown-order")
        body_rejected = await svc.wait_for_log(
            event="payment.callback_rejected", request_id="cb-not-json"
        )
        assert (body_rejected["reason"], body_rejected["security"]) == ("body", True)
        assert API_KEY not in svc.log_text()
        rejected_series = {
            dict(labels)["reason"]: value
            for (name, labels), value in (await samples(svc)).items()
            if name == "lumiku_payment_callbacks_rejected_total"
        }
        assert rejected_series == {
            "signature": 2,
            "amount": 1,
            "merchant": 1,
            "unknown_order": 1,
            "missing_signature": 1,
            "content_type": 1,
            "body": 2,
        }


@pytest.mark.parametrize(
    ("env", "headers", "expected"),
    [
        # The peer (127.0.0.1) is not allowed, and is not a trusted proxy: its
        # X-Forwarded-For naming an allowed address is ignored.
        ({}, {}, 403),
        ({}, {"X-Forwarded-For": "10.1.2.3"}, 403),
        # From a trusted proxy, the forwarded client address is the one checked.
        ({"LUMIKU_HTTP_TRUSTED_PROXIES": "127.0.0.1/32"}, {"X-Forwarded-For": "10.1.2.3"}, 200),
        ({"LUMIKU_HTTP_TRUSTED_PROXIES": "127.0.0.1/32"}, {"X-Forwarded-For": "192.0.2.7"}, 403),
    ],
)
async def test_the_ip_allowlist_uses_the_trusted_client_ip(
    tmp_path: Path,
    database_url: str,
    env: dict[str, str],
    headers: dict[str, str],
    expected: int,
) -> None:
    env = {"LUMIKU_DUITKU_IP_ALLOWLIST": "10.1.2.3/32", **env}
    async with payment_service(tmp_path, database_url, **env) as (svc, _fake):
        auth = await buyer(svc)
        order_id = (await create(svc, auth)).json()["merchant_order_id"]
        fields = FakeDuitku.callback_fields(order_id, STARTER["price_idr"])
        response = await post_callback(svc.client, fields, headers)
        assert response.status_code == expected, response.text
        credited = WELCOME + (STARTER["credits"] if expected == 200 else 0)
        assert await balance(svc, auth) == credited
        if expected == 403:
            assert response.json()["code"] == "CALLBACK_SOURCE_FORBIDDEN"
            # The source is checked before the body is read: a stranger's junk is 403 too.
            junk = await svc.client.post(
                "/api/payment/duitku/callback",
                content=b"junk",
                headers={**headers, "content-type": "text/plain", "X-Request-ID": "cb-junk"},
            )
            assert junk.status_code == 403
            logged = await svc.wait_for_log(event="payment.callback_rejected", request_id="cb-junk")
            trusted = "LUMIKU_HTTP_TRUSTED_PROXIES" in env
            client_ip = headers["X-Forwarded-For"] if trusted else "127.0.0.1"
            assert (logged["reason"], logged["client_ip"]) == ("source_not_allowed", client_ip)


async def test_a_failed_payment_refuses_a_later_success(tmp_path: Path, database_url: str) -> None:
    async with payment_service(tmp_path, database_url) as (svc, _fake):
        auth = await buyer(svc)
        order_id = (await create(svc, auth)).json()["merchant_order_id"]
        price = STARTER["price_idr"]
        failed = await post_callback(svc.client, FakeDuitku.callback_fields(order_id, price, "01"))
        assert (failed.status_code, failed.text) == (200, "SUCCESS")
        status = await svc.client.get(f"/api/payment/status/{order_id}", headers=auth)
        assert status.json()["status"] == "failed"
        late = await post_callback(svc.client, FakeDuitku.callback_fields(order_id, price))
        assert late.status_code == 400
        assert late.json()["code"] == "CALLBACK_REJECTED"
        assert await balance(svc, auth) == WELCOME
        status = await svc.client.get(f"/api/payment/status/{order_id}", headers=auth)
        assert status.json()["status"] == "failed"


async def test_status_is_for_the_owner_only(tmp_path: Path, database_url: str) -> None:
    async with payment_service(tmp_path, database_url) as (svc, _fake):
        owner, other = await buyer(svc), await buyer(svc, "other@example.com")
        order_id = (await create(svc, owner)).json()["merchant_order_id"]
        theirs = await svc.client.get(f"/api/payment/status/{order_id}", headers=other)
        assert theirs.status_code == 404
        assert theirs.json()["code"] == "PAYMENT_NOT_FOUND"
        unknown = await svc.client.get("/api/payment/status/LMK-nothing", headers=owner)
        assert unknown.json()["code"] == "PAYMENT_NOT_FOUND"
        assert theirs.json()["detail"].replace(order_id, "X") == unknown.json()["detail"].replace(
            "LMK-nothing", "X"
        )
        anonymous = await svc.client.get(f"/api/payment/status/{order_id}")
        assert anonymous.status_code == 401


@pytest.mark.parametrize("mode", ["error", "refuse", "hang"])
async def test_duitku_failures_answer_502_and_fail_the_payment(
    tmp_path: Path, database_url: str, mode: str
) -> None:
    async with payment_service(tmp_path, database_url, mode) as (svc, fake):
        auth = await buyer(svc)
        response = await create(svc, auth)
        assert response.status_code == 502, response.text
        problem = response.json()
        assert problem["code"] == "PAYMENT_PROVIDER_ERROR"
        assert API_KEY not in response.text
        assert "127.0.0.1" not in response.text
        status = await svc.client.get(
            f"/api/payment/status/{problem['merchant_order_id']}", headers=auth
        )
        assert status.json()["status"] == "failed"
        assert len(fake.inquiries) == 1


async def test_the_breaker_stops_calling_a_failing_duitku(
    tmp_path: Path, database_url: str
) -> None:
    async with payment_service(tmp_path, database_url, "error") as (svc, fake):
        auth = await buyer(svc)
        for _ in range(3):
            assert (await create(svc, auth)).status_code == 502
        assert len(fake.inquiries) == 3
        refused = await create(svc, auth)
        assert refused.status_code == 502
        assert len(fake.inquiries) == 3  # the open breaker answered without calling Duitku


async def test_create_is_rate_limited_per_user(tmp_path: Path, database_url: str) -> None:
    env = {"LUMIKU_RATELIMIT_PAYMENT_CREATE": "2/1m"}
    async with payment_service(tmp_path, database_url, **env) as (svc, _fake):
        auth, other = await buyer(svc), await buyer(svc, "second@example.com")
        assert [(await create(svc, auth)).status_code for _ in range(3)] == [201, 201, 429]
        assert (await create(svc, other)).status_code == 201


async def test_payments_disabled_answer_404(tmp_path: Path, sqlite_url: str) -> None:
    settings = make_settings(tmp_path, {"LUMIKU_DATABASE_URL": sqlite_url})
    async with running_service(settings, blueprints=[]) as svc:
        auth = await buyer(svc)
        for method, path in [
            ("GET", "/api/payment/packages"),
            ("POST", "/api/payment/duitku/create"),
            ("POST", "/api/payment/duitku/callback"),
            ("GET", "/api/payment/status/LMK-x"),
        ]:
            response = await svc.client.request(method, path, headers=auth, json={})
            assert response.status_code == 404, (path, response.text)
            assert response.json()["code"] == "PAYMENTS_DISABLED"


async def test_the_running_service_expires_pending_payments(
    tmp_path: Path, database_url: str
) -> None:
    """The supervisor's expiry task marks a payment left pending `expired`; Duitku's late
    verdict still counts: paid → credited once, failed → failed."""
    env = {"LUMIKU_PAYMENTS_EXPIRY_S": "1", "LUMIKU_PAYMENTS_EXPIRY_CHECK_S": "0.05"}
    async with payment_service(tmp_path, database_url, **env) as (svc, fake):
        auth = await buyer(svc)
        paid_late = (await create(svc, auth)).json()["merchant_order_id"]
        failed_late = (await create(svc, auth)).json()["merchant_order_id"]
        assert [i["expiryPeriod"] for i in fake.inquiries] == [1, 1]  # minutes, rounded up
        for order_id in (paid_late, failed_late):
            await svc.wait_for_log(event="payment.expired", merchant_order_id=order_id)
            status = await svc.client.get(f"/api/payment/status/{order_id}", headers=auth)
            assert status.json()["status"] == "expired"
        price = STARTER["price_idr"]
        for _ in range(2):
            reply = await post_callback(svc.client, FakeDuitku.callback_fields(paid_late, price))
            assert (reply.status_code, reply.text) == (200, "SUCCESS")
        reply = await post_callback(
            svc.client, FakeDuitku.callback_fields(failed_late, price, "02")
        )
        assert (reply.status_code, reply.text) == (200, "SUCCESS")
        statuses = [
            (await svc.client.get(f"/api/payment/status/{o}", headers=auth)).json()["status"]
            for o in (paid_late, failed_late)
        ]
        assert statuses == ["success", "failed"]
        assert await balance(svc, auth) == WELCOME + STARTER["credits"]


async def test_callbacks_are_rate_limited_per_ip_and_the_refusal_logged(
    tmp_path: Path, database_url: str
) -> None:
    env = {"LUMIKU_RATELIMIT_PAYMENT_CALLBACK": "2/1m"}
    async with payment_service(tmp_path, database_url, **env) as (svc, _fake):
        auth = await buyer(svc)
        order_id = (await create(svc, auth)).json()["merchant_order_id"]
        fields = FakeDuitku.callback_fields(order_id, STARTER["price_idr"])
        replies = [
            await post_callback(svc.client, fields, {"X-Request-ID": f"cb-limit-{i}"})
            for i in range(3)
        ]
        assert [r.status_code for r in replies] == [200, 200, 429]
        assert replies[2].json()["code"] == "RATE_LIMITED"
        assert "retry-after" in replies[2].headers
        logged = await svc.wait_for_log(event="payment.callback_rejected", request_id="cb-limit-2")
        assert (logged["reason"], logged["client_ip"]) == ("rate_limited", "127.0.0.1")
        assert await balance(svc, auth) == WELCOME + STARTER["credits"]
