"""The one-file executable (SPEC §2, §14): bin/smoke passes on it, and it answers the
command line exactly as `python -m lumiku` does. (Its systemd behaviour — READY=1, the
watchdog, STOPPING=1, socket activation — is tested with the Python process's in
test_process.py, parametrised over both commands.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.process import ROOT, base_env

pytestmark = pytest.mark.slow

MAX_BYTES = 60_000_000


def smoke(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "bin" / "smoke"), str(binary), *args],
        env={"PATH": os.environ["PATH"], "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def summary(result: subprocess.CompletedProcess[str]) -> tuple[float, float]:
    """(size in MB, start-to-ready in s) from bin/smoke's last line."""
    found = re.search(r"binary ([\d.]+) MB .*start-to-ready ([\d.]+) s", result.stdout)
    assert found, result.stdout + result.stderr
    return float(found[1]), float(found[2])


def test_smoke_passes_on_the_embedded_default(lumiku_binary: Path) -> None:
    result = smoke(lumiku_binary)
    assert result.returncode == 0, result.stdout + result.stderr
    # The start-to-ready time bin/smoke prints is a measurement (bench/README.md), not a
    # test: on a loaded machine it varies several-fold.
    size_mb, _ready_s = summary(result)
    assert size_mb * 1_000_000 < MAX_BYTES
    assert lumiku_binary.stat().st_size < MAX_BYTES
    assert "avatar generated and downloaded" in result.stderr


def test_smoke_passes_on_postgresql_and_redis(
    lumiku_binary: Path, postgres_empty_url: str, redis_url: str
) -> None:
    """asyncpg (through trio-asyncio) and coredis (its hashed mypyc module) work frozen."""
    result = smoke(lumiku_binary, "--database-url", postgres_empty_url, "--redis-url", redis_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed on postgresql://" in result.stderr


def test_smoke_fails_loudly_on_a_missing_binary(tmp_path: Path) -> None:
    result = smoke(tmp_path / "lumiku")
    assert result.returncode == 1
    assert "smoke: FAILED" in result.stderr
    assert "is not an executable file" in result.stderr


def run_both(
    binary: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    """`python -m lumiku ARGS` and `BINARY ARGS`, each in its own empty working directory
    with the same relative var dir, so their output can be compared line for line."""
    results = []
    for name, command in (("python", [sys.executable, "-m", "lumiku"]), ("binary", [binary])):
        workdir = tmp_path / name
        workdir.mkdir(exist_ok=True)
        environment = base_env(workdir, {"LUMIKU_VAR_DIR": "./var", **(env or {})})
        environment["PYTHONPATH"] = str(ROOT)
        results.append(
            subprocess.run(
                [str(part) for part in (*command, *args)],
                cwd=workdir,
                env=environment,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        )
    return results[0], results[1]


def verdicts(output: str) -> list[tuple[str, str]]:
    """(ok/WARN/FAIL, check name) of each `--check` line, without the details that may differ
    (free disk space)."""
    return [
        (line.split()[0], line.split()[1])
        for line in output.splitlines()
        if line.startswith(("ok ", "WARN ", "FAIL "))
    ]


def test_check_answers_like_python_on_the_embedded_default(
    lumiku_binary: Path, tmp_path: Path
) -> None:
    python, binary = run_both(lumiku_binary, tmp_path, "--check")
    # fresh SQLite: schema behind, which `serve` migrates by itself outside production
    assert (python.returncode, binary.returncode) == (0, 0), python.stdout + binary.stdout
    assert verdicts(binary.stdout) == verdicts(python.stdout)
    assert ("WARN", "database") in verdicts(binary.stdout)
    python, binary = run_both(lumiku_binary, tmp_path, "migrate")
    assert (python.returncode, binary.returncode) == (0, 0), python.stderr + binary.stderr
    assert binary.stdout == python.stdout
    python, binary = run_both(lumiku_binary, tmp_path, "--check")
    assert (python.returncode, binary.returncode) == (0, 0), python.stdout + binary.stdout
    assert verdicts(binary.stdout) == verdicts(python.stdout)
    assert [v for v, _ in verdicts(binary.stdout)] == ["ok"] * 5
    assert binary.stdout.splitlines()[-1] == "all checks passed"


def test_check_reports_a_broken_config_like_python(lumiku_binary: Path, tmp_path: Path) -> None:
    broken = {
        "LUMIKU_HTTP_BIND": "nope",
        "LUMIKU_LOG_LEVEL": "loud",
        "LUMIKU_SHUTDOWN_GRACE_S": "soon",
    }
    python, binary = run_both(lumiku_binary, tmp_path, "--check", env=broken)
    assert (python.returncode, binary.returncode) == (2, 2)
    assert binary.stdout == python.stdout
    assert "http.bind (env LUMIKU_HTTP_BIND)" in binary.stdout
    assert "Traceback" not in binary.stdout + binary.stderr
    # serve refuses the same config with the same exit code and the same problems
    python, binary = run_both(lumiku_binary, tmp_path, "serve", env=broken)
    assert (python.returncode, binary.returncode) == (2, 2)
    assert binary.stderr == python.stderr


def test_check_reports_an_unreachable_database_like_python(
    lumiku_binary: Path, tmp_path: Path
) -> None:
    env = {
        "LUMIKU_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere",
        "LUMIKU_DATABASE_CONNECT_TIMEOUT_S": "1",
    }
    python, binary = run_both(lumiku_binary, tmp_path, "--check", env=env)
    assert (python.returncode, binary.returncode) == (3, 3)
    assert verdicts(binary.stdout) == verdicts(python.stdout)


def test_version_names_the_commit_it_was_built_from(lumiku_binary: Path, tmp_path: Path) -> None:
    python, binary = run_both(lumiku_binary, tmp_path, "--version")
    assert (python.returncode, binary.returncode) == (0, 0)
    commit = re.search(r"\(commit ([^)]+)\)", binary.stdout)
    assert commit, binary.stdout
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    assert commit[1].removesuffix("-dirty") == (head or "unknown")
    # the same interpreter and the same backends as the environment it was built from
    assert binary.stdout.splitlines()[1:] == python.stdout.splitlines()[1:]
