"""Feature flags against the real service: a disabled app is hidden and answers 404
APP_DISABLED, beta users still get it, and `lumiku flags set` reaches two running instances
within 2 s through Redis."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import trio

from lumiku.apps.builtin import builtin_apps
from tests.e2e.harness import Service, bearer, make_settings, register, running_service

POSE = "pose-generator"
SECRET = "flags-test-secret-0123456789abcdef-XYZ"


async def lumiku_cli(*args: str, env: dict[str, str]) -> trio.CompletedProcess[bytes]:
    return await trio.run_process(
        [sys.executable, "-m", "lumiku", *args],
        env={**os.environ, **env},
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )


async def app_ids(svc: Service, auth: dict[str, str]) -> set[str]:
    response = await svc.client.get("/api/apps", headers=auth)
    assert response.status_code == 200, response.text
    return {app["id"] for app in response.json()["apps"]}


async def test_an_app_at_zero_percent_is_hidden_except_from_beta_users(
    tmp_path: Path, sqlite_url: str
) -> None:
    env = {"LUMIKU_DATABASE_URL": sqlite_url, "LUMIKU_FLAGS_VALUES": f"{POSE}=0"}
    settings = make_settings(tmp_path, env)
    with trio.fail_after(60):
        async with running_service(settings, blueprints=[], apps=builtin_apps()) as svc:
            body = await register(svc.client, "early@example.com")
            auth = bearer(body["token"])
            assert await app_ids(svc, auth) == {"avatar-creator"}
            for headers in (auth, {}):
                hidden = await svc.client.get(f"/api/apps/{POSE}/categories", headers=headers)
                assert hidden.status_code == 404
                assert hidden.json()["code"] == "APP_DISABLED"
            posted = await svc.client.post(f"/api/apps/{POSE}/projects", json={}, headers=auth)
            assert posted.json()["code"] == "APP_DISABLED"  # before any validation
            # The other app is untouched.
            shown = await svc.client.get("/api/apps/avatar-creator/presets", headers=auth)
            assert shown.status_code == 200, shown.text

            tagged = await lumiku_cli(
                "users",
                "tag",
                "--email",
                "early@example.com",
                "--add",
                "beta_tester",
                env={"LUMIKU_DATABASE_URL": sqlite_url, "LUMIKU_VAR_DIR": str(tmp_path / "var")},
            )
            assert tagged.returncode == 0, tagged.stderr
            assert await app_ids(svc, auth) == {"avatar-creator", POSE}
            allowed = await svc.client.get(f"/api/apps/{POSE}/categories", headers=auth)
            assert allowed.status_code == 200, allowed.text
            # Anonymous callers are not beta users.
            anonymous = await svc.client.get(f"/api/apps/{POSE}/categories")
            assert anonymous.json()["code"] == "APP_DISABLED"


@contextlib.asynccontextmanager
async def two_instances(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> AsyncIterator[tuple[Service, Service]]:
    env = {
        "LUMIKU_DATABASE_URL": postgres_url,
        "LUMIKU_REDIS_URL": redis_url,
        "LUMIKU_AUTH_JWT_SECRET": SECRET,
        # Only the change announcement can act within the test's bound, not the re-read.
        "LUMIKU_FLAGS_REFRESH_S": "30",
    }
    async with contextlib.AsyncExitStack() as stack:
        services = [
            await stack.enter_async_context(
                running_service(
                    make_settings(tmp_path / label, env), blueprints=[], apps=builtin_apps()
                )
            )
            for label in ("a", "b")
        ]
        yield services[0], services[1]


async def wait_until_everywhere(
    services: tuple[Service, Service], auth: dict[str, str], *, shown: bool
) -> None:
    """Poll both instances until the pose app is shown (or hidden) on each."""
    pending = list(services)
    while pending:
        pending = [s for s in pending if (POSE in await app_ids(s, auth)) != shown]
        if pending:
            await trio.sleep(0.02)


async def test_flags_set_reaches_two_instances_within_2_s(
    tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    cli_env = {"LUMIKU_REDIS_URL": redis_url, "LUMIKU_VAR_DIR": str(tmp_path / "cli")}
    with trio.fail_after(90):
        async with two_instances(tmp_path, postgres_url, redis_url) as services:
            a, b = services
            auth = bearer((await register(a.client, "both@example.com"))["token"])
            assert POSE in await app_ids(a, auth)
            assert POSE in await app_ids(b, auth)

            switched = await lumiku_cli("flags", "set", POSE, "off", env=cli_env)
            assert switched.returncode == 0, switched.stderr
            with trio.fail_after(2):
                await wait_until_everywhere(services, auth, shown=False)
            blocked = await b.client.get(f"/api/apps/{POSE}/categories", headers=auth)
            assert blocked.json()["code"] == "APP_DISABLED"

            listed = await lumiku_cli("flags", "list", env=cli_env)
            assert f"{POSE}" in listed.stdout.decode()
            assert "off" in listed.stdout.decode()
            assert "(redis)" in listed.stdout.decode()

            restored = await lumiku_cli("flags", "unset", POSE, env=cli_env)
            assert restored.returncode == 0, restored.stderr
            with trio.fail_after(2):
                await wait_until_everywhere(services, auth, shown=True)
