"""The running service while PostgreSQL or Redis is cut by a TcpProxy, in both modes.

Reset mode (`take_down`: connections closed, new ones refused) and drop mode (`drop`: the
network goes silent, as a dead host or a partition). Requests answer a 503 problem within
the client-side bound, never a 500 and never a hang; readiness turns 503 within
`readiness_cache_s + check_timeout_s` of the cut and 200 again after the restore; the pool
serves again after the restore; fail-closed logins let nobody through while Redis is
silent. Bounds are asserted with `trio.fail_after` around the client calls (with slack),
never on measured durations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
import trio
import trio.testing

from tests.e2e.harness import STRONG_PASSWORD, Service, bearer, make_settings, register
from tests.e2e.harness import running_service as running

if TYPE_CHECKING:
    from pathlib import Path

    from lumiku.testing import TcpProxy

MODES = ("drop", "reset")
COMMAND_TIMEOUT_S = 2.0
READINESS_BOUND_S = 1.0 + 0.5  # health.readiness_cache_s + health.check_timeout_s
SLACK_S = 1.5


def cut(proxy: TcpProxy, mode: str) -> None:
    if mode == "drop":
        proxy.drop()
    else:
        proxy.take_down()


async def wait_for_readiness(service: Service, status: int) -> httpx.Response:
    """Poll readiness until it answers `status` (the caller bounds the wait)."""
    while True:
        response = await service.client.get("/health/readiness")
        if response.status_code == status:
            return response
        await trio.sleep(0.05)


def assert_outage_problem(response: httpx.Response, code: str) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["code"] == code
    assert int(response.headers["Retry-After"]) > 0
    assert "PostgreSQL" not in response.text  # no internals
    assert "127.0.0.1" not in response.text


@pytest.mark.parametrize("mode", MODES)
async def test_postgres_cut_answers_503_database_unavailable_and_recovers(
    tmp_path: Path, postgres_proxy: tuple[TcpProxy, str], mode: str
) -> None:
    proxy, url = postgres_proxy
    env = {
        "LUMIKU_DATABASE_URL": url,
        "LUMIKU_DATABASE_COMMAND_TIMEOUT_S": str(COMMAND_TIMEOUT_S),
        "LUMIKU_DATABASE_CONNECT_TIMEOUT_S": "1",
        "LUMIKU_DATABASE_POOL_MIN_SIZE": "3",
    }
    with trio.fail_after(90):
        async with running(make_settings(tmp_path, env)) as service:
            token = (await register(service.client, f"{mode}@example.com"))["token"]
            profile = await service.client.get("/api/auth/profile", headers=bearer(token))
            assert profile.status_code == 200
            assert (await service.client.get("/health/readiness")).status_code == 200

            cut(proxy, mode)
            with trio.fail_after(READINESS_BOUND_S + SLACK_S):
                down = await wait_for_readiness(service, 503)
            assert down.json()["checks"]["database"]["status"] == "error"

            answers: list[httpx.Response] = []

            async def ask(path: str, **kwargs: object) -> None:
                with trio.fail_after(COMMAND_TIMEOUT_S + SLACK_S):
                    if path.endswith("login"):
                        answers.append(await service.client.post(path, **kwargs))  # type: ignore[arg-type]
                    else:
                        answers.append(await service.client.get(path, **kwargs))  # type: ignore[arg-type]

            async with trio.open_nursery() as nursery:
                for _ in range(4):
                    nursery.start_soon(lambda: ask("/api/auth/profile", headers=bearer(token)))
                nursery.start_soon(
                    lambda: ask(
                        "/api/auth/login",
                        json={"email": f"{mode}@example.com", "password": STRONG_PASSWORD},
                    )
                )
            assert len(answers) == 5
            for answer in answers:
                assert_outage_problem(answer, "DATABASE_UNAVAILABLE")
            assert '"status": 500' not in service.log_text()
            assert "http.unhandled_exception" not in service.log_text()

            proxy.bring_up()
            with trio.fail_after(READINESS_BOUND_S + COMMAND_TIMEOUT_S + SLACK_S):
                await wait_for_readiness(service, 200)
            # The pool serves again: every connection it hands out works (the dead or
            # silent ones were discarded, or resumed with the restore).
            with trio.fail_after(COMMAND_TIMEOUT_S * 2 + SLACK_S):
                while True:
                    back = await service.client.get("/api/auth/profile", headers=bearer(token))
                    if back.status_code == 200:
                        break
                    assert_outage_problem(back, "DATABASE_UNAVAILABLE")
            async with trio.open_nursery() as nursery:
                for _ in range(6):
                    nursery.start_soon(lambda: ask("/api/auth/profile", headers=bearer(token)))
            assert [a.status_code for a in answers[5:]] == [200] * 6


async def test_silent_postgres_answers_within_10_s_with_the_default_bounds(
    tmp_path: Path, postgres_proxy: tuple[TcpProxy, str]
) -> None:
    """The acceptance bound with nothing configured: a request meeting a silent database
    answers 503 within 10 s."""
    proxy, url = postgres_proxy
    with trio.fail_after(60):
        async with running(make_settings(tmp_path, {"LUMIKU_DATABASE_URL": url})) as service:
            token = (await register(service.client, "defaults@example.com"))["token"]
            proxy.drop()
            with trio.fail_after(10):
                answer = await service.client.get("/api/auth/profile", headers=bearer(token))
            assert_outage_problem(answer, "DATABASE_UNAVAILABLE")
            proxy.bring_up()


@pytest.mark.parametrize("mode", MODES)
async def test_redis_cut_turns_readiness_503_and_logins_are_refused(
    tmp_path: Path,
    postgres_url: str,
    redis_proxy: tuple[TcpProxy, str],
    mode: str,
) -> None:
    """Login is a fail-closed rule: while Redis does not answer, every login is 503
    RATE_LIMITER_UNAVAILABLE within the limiter's timeout, none is let through; routes that
    need no Redis keep working."""
    proxy, redis_url = redis_proxy
    env = {
        "LUMIKU_DATABASE_URL": postgres_url,
        "LUMIKU_REDIS_URL": redis_url,
        "LUMIKU_REDIS_COMMAND_TIMEOUT_S": "0.5",
    }
    email = f"redis-{mode}@example.com"
    credentials = {"email": email, "password": STRONG_PASSWORD}
    with trio.fail_after(90):
        async with running(make_settings(tmp_path, env)) as service:
            token = (await register(service.client, email))["token"]
            assert (await service.client.post("/api/auth/login", json=credentials)).is_success

            cut(proxy, mode)
            with trio.fail_after(READINESS_BOUND_S + SLACK_S):
                down = await wait_for_readiness(service, 503)
            assert down.json()["checks"]["redis"]["status"] == "error"
            assert down.json()["checks"]["database"]["status"] == "ok"

            logins: list[httpx.Response] = []

            async def login() -> None:
                with trio.fail_after(0.5 * 2 + SLACK_S):  # hit, then the lockout peek
                    logins.append(await service.client.post("/api/auth/login", json=credentials))

            async with trio.open_nursery() as nursery:
                for _ in range(6):
                    nursery.start_soon(login)
            assert len(logins) == 6
            for answer in logins:
                assert answer.status_code == 503, answer.text
                assert answer.json()["code"] == "RATE_LIMITER_UNAVAILABLE"
            # Routes that need no Redis keep working.
            profile = await service.client.get("/api/auth/profile", headers=bearer(token))
            assert profile.status_code == 200

            proxy.bring_up()
            with trio.fail_after(READINESS_BOUND_S + 2 + SLACK_S):
                await wait_for_readiness(service, 200)
            with trio.fail_after(10):
                while True:
                    back = await service.client.post("/api/auth/login", json=credentials)
                    if back.status_code != 503:
                        break
                    await trio.sleep(0.05)
            # Hits sent into a silent connection may be counted once it heals: a 429, or
            # the login itself; never a 500.
            assert back.status_code in (200, 429), back.text


async def test_shutdown_during_a_silent_cut_of_both_is_bounded(
    tmp_path: Path, postgres_proxy: tuple[TcpProxy, str], redis_proxy: tuple[TcpProxy, str]
) -> None:
    """The shutdown request (SIGTERM) while PostgreSQL and Redis are both silent, with a
    request in flight on the database: the service stops within its grace and the clean-up
    bounds, waiting on nothing; the request gets an answer or a closed connection."""
    pg_proxy, url = postgres_proxy
    rd_proxy, redis_url = redis_proxy
    env = {"LUMIKU_DATABASE_URL": url, "LUMIKU_REDIS_URL": redis_url}
    answers: list[int] = []
    try:
        with trio.fail_after(90) as bound:
            async with running(make_settings(tmp_path, env)) as service:
                token = (await register(service.client, "shutdown@example.com"))["token"]
                pg_proxy.drop()
                rd_proxy.drop()

                async def in_flight() -> None:
                    try:
                        response = await service.client.get(
                            "/api/auth/profile", headers=bearer(token)
                        )
                        answers.append(response.status_code)
                    except httpx.TransportError:
                        answers.append(0)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(in_flight)
                    await trio.testing.wait_all_tasks_blocked()
                    # shutdown.grace_s (5 s in the harness) and the clean-up bounds (10 s
                    # for the pool), with slack
                    bound.deadline = trio.current_time() + 5 + 10 + 2 * SLACK_S
                    service.state.request("test: shutdown during the cut")
    finally:
        pg_proxy.bring_up()
        rd_proxy.bring_up()
    assert answers in ([503], [0])
