"""Schemathesis over every operation of `/openapi.json` against the live service (SPEC §12).

The real `lumiku serve` runs as its own process on the embedded defaults (SQLite, local
storage, local provider) with the built-in apps, payments on (against the fake Duitku
server) and rate limits off, so the fuzzer gets past the limiter. An admin account
(made with `lumiku users create`) signs every request, so admin routes are explored too;
`ignored_auth` still sends requests without the token.

Every check runs except `positive_data_acceptance`: the document states types, enums,
ranges and unknown-field refusal exactly, but rules that JSON Schema cannot state
(lengths after whitespace collapsing, the prompt blocklist, ids that must name an existing
resource of the caller's) reject some schema-valid bodies with 400 or 404, as they should.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpx
import pytest

from lumiku.http.openapi import OPERATIONS
from tests.e2e.process import ROOT, base_env

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.slow

# ~70 s on 2 cores; LUMIKU_FUZZ_MAX_EXAMPLES raises it for a longer hunt.
MAX_EXAMPLES: Final = int(os.environ.get("LUMIKU_FUZZ_MAX_EXAMPLES", "100"))
SEED: Final = 20261204
START_TIMEOUT_S: Final = 60.0
RUN_TIMEOUT_S: Final = 600.0
ADMIN_EMAIL: Final = "fuzz-admin@example.com"
ADMIN_PASSWORD: Final = "Fuzz-admin-Pa55word!"
SCHEMATHESIS: Final = Path(sys.executable).with_name("schemathesis")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_up(base_url: str, process: subprocess.Popen[bytes], path: str = "/health") -> None:
    """Poll `path` until it answers (bounded; fails if the process exits)."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, "the service exited during start-up"
        try:
            if httpx.get(f"{base_url}{path}", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # polling a condition under a deadline, not timing the test
    raise AssertionError("the service did not start")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The base URL of a running `lumiku serve` and its environment."""
    port, duitku_port = free_port(), free_port()
    env = base_env(
        tmp_path,
        {
            "PYTHONPATH": str(ROOT),
            "LUMIKU_HTTP_BIND": f"127.0.0.1:{port}",
            "LUMIKU_RATELIMIT_ENABLED": "false",
            "LUMIKU_LOG_LEVEL": "warning",
            "LUMIKU_AUTH_ARGON2_TIME_COST": "1",
            "LUMIKU_AUTH_ARGON2_MEMORY_KIB": "1024",
            "LUMIKU_AUTH_ARGON2_PARALLELISM": "1",
            # Payments on, against the fake Duitku (tests/e2e/fake_duitku.py).
            "LUMIKU_PAYMENTS_ENABLED": "true",
            "LUMIKU_DUITKU_MERCHANT_CODE": "D0001",
            "LUMIKU_DUITKU_API_KEY": "fuzz-duitku-key",
            "LUMIKU_DUITKU_BASE_URL": f"http://127.0.0.1:{duitku_port}/webapi/api/merchant",
            "LUMIKU_DUITKU_CALLBACK_URL": f"http://127.0.0.1:{port}/api/payment/duitku/callback",
            "LUMIKU_DUITKU_RETURN_URL": "http://127.0.0.1/paid",
            "LUMIKU_DUITKU_TIMEOUT_S": "2",
        },
    )
    log = (tmp_path / "service.log").open("wb")
    duitku = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.fake_duitku", str(duitku_port)],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "lumiku", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"http://127.0.0.1:{duitku_port}", duitku, path="/")
        wait_until_up(base_url, process)
        yield base_url, env
    finally:
        for child in (process, duitku):
            child.terminate()
            child.wait(timeout=30)
        log.close()


def admin_token(base_url: str, env: dict[str, str], tmp_path: Path) -> str:
    password_file = tmp_path / "password"
    password_file.write_text(ADMIN_PASSWORD + "\n")
    create = ("users", "create", "--email", ADMIN_EMAIL, "--role", "admin")
    subprocess.run(
        [sys.executable, "-m", "lumiku", *create, "--password-file", str(password_file)],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    response = httpx.post(
        f"{base_url}/api/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def test_schemathesis_finds_no_server_error_or_schema_violation(
    service: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base_url, env = service
    token = admin_token(base_url, env, tmp_path)
    report = tmp_path / "report.json"
    command = [
        str(SCHEMATHESIS),
        "run",
        f"{base_url}/openapi.json",
        "--header",
        f"Authorization: Bearer {token}",
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "2",
        "--request-timeout",
        "30",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, cwd=tmp_path, check=False
    )
    output = run.stdout + run.stderr
    (tmp_path / "schemathesis.txt").write_text(output)
    assert report.exists(), f"schemathesis wrote no report:\n{output[-4000:]}"
    results: dict[str, Any] = json.loads(report.read_text())
    assert results["failures"] == [], f"schemathesis found problems:\n{output[-12000:]}"
    assert results["errors"] == [], f"schemathesis could not run everything:\n{output[-6000:]}"
    assert results["complete"], output[-6000:]
    assert run.returncode == 0, output[-6000:]
    operations = results["operations"]
    # every operation but GET /openapi.json, which the CLI leaves out as the schema's own URL
    assert operations["tested"] == operations["total"] == len(OPERATIONS) - 1, operations
    cases = results["test_cases"]
    assert cases["with_failures"] == 0
    assert cases["generated"] >= len(OPERATIONS) * 10, cases  # it really explored
