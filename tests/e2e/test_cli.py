"""`lumiku` as an operator runs it: exit codes and output of check, migrate, config, version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.process import ROOT, base_env

pytestmark = pytest.mark.slow

STRONG_SECRET = "pR0d-S3cret-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


def lumiku(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumiku", *args],
        env=base_env(tmp_path, env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_check_passes_on_the_embedded_default_after_migrate(tmp_path: Path) -> None:
    assert lumiku(tmp_path, "migrate").returncode == 0
    result = lumiku(tmp_path, "--check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    for name in ("config", "database", "redis", "storage", "providers"):
        assert any(
            line.split()[1] == name
            for line in result.stdout.splitlines()
            if line.strip()
            if len(line.split()) > 1
        )


def test_check_alias_and_json(tmp_path: Path) -> None:
    lumiku(tmp_path, "migrate")
    result = lumiku(tmp_path, "check", "--json")
    assert result.returncode == 0
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert {c["name"] for c in report["checks"]} >= {"config", "database", "redis", "storage"}


@pytest.mark.parametrize("environment", ["development", "test"])
def test_check_warns_of_a_schema_behind_where_serve_migrates_it(
    tmp_path: Path, environment: str
) -> None:
    # A fresh var dir: the SQLite file has every migration pending, which `serve` applies
    # by itself outside production.
    result = lumiku(tmp_path, "--check", env={"LUMIKU_ENVIRONMENT": environment})
    assert result.returncode == 0, result.stdout + result.stderr
    (warning,) = [line for line in result.stdout.splitlines() if line.startswith("WARN")]
    assert warning.split()[1] == "database"
    assert "schema is behind" in warning
    assert "0001_initial" in warning
    assert "`serve` applies them at start" in warning
    assert result.stdout.splitlines()[-1] == "all checks passed, 1 warning(s)"
    report = json.loads(lumiku(tmp_path, "check", "--json").stdout)
    database = next(c for c in report["checks"] if c["name"] == "database")
    assert (report["exit_code"], database["ok"], database["warning"]) == (0, True, True)


def test_check_reports_an_unreachable_database_with_3(tmp_path: Path) -> None:
    env = {
        "LUMIKU_DATABASE_URL": "postgresql://postgres:hunter2pw@127.0.0.1:1/nowhere",
        "LUMIKU_DATABASE_CONNECT_TIMEOUT_S": "2",
    }
    result = lumiku(tmp_path, "--check", env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "unreachable" in result.stdout
    assert "hunter2pw" not in result.stdout + result.stderr


def test_check_reports_an_unreachable_redis_with_3(tmp_path: Path) -> None:
    lumiku(tmp_path, "migrate")
    result = lumiku(tmp_path, "--check", env={"LUMIKU_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert result.returncode == 3, result.stdout + result.stderr
    assert any(line.startswith("FAIL") and "redis" in line for line in result.stdout.splitlines())


def test_check_names_the_providers_and_deep_probes_the_http_one(tmp_path: Path) -> None:
    lumiku(tmp_path, "migrate")
    plain = lumiku(tmp_path, "check", "--json")
    (line,) = [c for c in json.loads(plain.stdout)["checks"] if c["name"] == "providers"]
    assert line == {
        "name": "providers",
        "ok": True,
        "warning": False,
        "detail": "avatar=local, pose=local, background=local",
    }
    hf = {
        "LUMIKU_PROVIDERS_POSE": "huggingface",
        "LUMIKU_HUGGINGFACE_BASE_URL": "http://127.0.0.1:9",
    }
    assert lumiku(tmp_path, "--check", env=hf).returncode == 0  # not probed without --deep
    deep = lumiku(tmp_path, "--check", "--deep", env=hf)
    assert deep.returncode == 3, deep.stdout + deep.stderr
    failed = [line for line in deep.stdout.splitlines() if line.startswith("FAIL")]
    assert len(failed) == 1
    assert "providers" in failed[0]
    assert "127.0.0.1:9 unreachable" in failed[0]


def test_check_lists_every_config_problem_with_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[http]\nkeep_alive_s = 0\nmax_body_bytes = -1\n[shutdown]\ngrace_s = "x"\n')
    result = lumiku(tmp_path, "--check", "--config", str(config), env={"LUMIKU_LOG_LEVEL": "loud"})
    assert result.returncode == 2
    for key in ("http.keep_alive_s", "http.max_body_bytes", "shutdown.grace_s", "log.level"):
        assert key in result.stdout
    assert f"file {config}" in result.stdout
    assert "env LUMIKU_LOG_LEVEL" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_production_with_weak_secret_sqlite_and_cors_star_exits_2_naming_all_three(
    tmp_path: Path,
) -> None:
    env = {
        "LUMIKU_ENVIRONMENT": "production",
        "JWT_SECRET": "change-this-secret",
        "LUMIKU_DATABASE_URL": f"sqlite:///{tmp_path}/prod.db",
        "CORS_ORIGIN": "*",
        "LUMIKU_REDIS_URL": "redis://127.0.0.1:6379/15",
        "LUMIKU_METRICS_TOKEN": "metrics-token-abcdef",
    }
    result = lumiku(tmp_path, "--check", env=env)
    assert result.returncode == 2
    for key in ("auth.jwt_secret", "database.url", "http.cors_origins"):
        assert key in result.stdout, result.stdout


def test_serve_with_invalid_config_exits_2_without_traceback(tmp_path: Path) -> None:
    result = lumiku(
        tmp_path, "serve", env={"LUMIKU_HTTP_BIND": "nope", "LUMIKU_SHUTDOWN_GRACE_S": "-1"}
    )
    assert result.returncode == 2
    assert "http.bind" in result.stderr
    assert "shutdown.grace_s" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_dry_run_applies_nothing(tmp_path: Path) -> None:
    dry = lumiku(tmp_path, "migrate", "--dry-run")
    assert dry.returncode == 0
    assert "would apply 0001_initial" in dry.stdout
    still_behind = lumiku(tmp_path, "--check")
    assert still_behind.returncode == 0
    assert "schema is behind" in still_behind.stdout
    real = lumiku(tmp_path, "migrate")
    assert "applied 0001_initial" in real.stdout
    again = lumiku(tmp_path, "migrate")
    assert "0 migration(s) applied" in again.stdout


def test_config_show_redacts_secrets(tmp_path: Path) -> None:
    env = {
        "JWT_SECRET": STRONG_SECRET,
        "LUMIKU_DATABASE_URL": "postgresql://app:db-pass-123@db.example:5432/lumiku",
        "LUMIKU_METRICS_TOKEN": "metrics-token-abcdef",
    }
    result = lumiku(tmp_path, "config", "show", env=env)
    assert result.returncode == 0
    assert STRONG_SECRET not in result.stdout
    assert "db-pass-123" not in result.stdout
    assert "metrics-token-abcdef" not in result.stdout
    assert "postgresql://app:***@db.example:5432/lumiku" in result.stdout
    assert 'jwt_secret = "<redacted>"  # env JWT_SECRET' in result.stdout
    assert "[http]" in result.stdout


def test_version(tmp_path: Path) -> None:
    result = lumiku(tmp_path, "--version")
    assert result.returncode == 0
    from lumiku import __version__

    assert result.stdout.startswith(f"lumiku {__version__} (commit ")
    assert "Python 3." in result.stdout
    assert "postgresql (asyncpg" in result.stdout
    assert "redis (coredis" in result.stdout
    assert "sqlite" in result.stdout


def test_check_on_postgres_behind_then_migrated(tmp_path: Path, postgres_empty_url: str) -> None:
    env = {"LUMIKU_DATABASE_URL": postgres_empty_url}
    behind = lumiku(tmp_path, "--check", "--json", env=env)
    assert behind.returncode == 0, behind.stdout + behind.stderr  # `serve` would migrate it
    report = json.loads(behind.stdout)
    database = next(c for c in report["checks"] if c["name"] == "database")
    assert (database["ok"], database["warning"]) == (True, True)
    assert "0001_initial" in database["detail"]
    assert lumiku(tmp_path, "migrate", env=env).returncode == 0
    current = lumiku(tmp_path, "--check", env=env)
    assert current.returncode == 0
    assert current.stdout.splitlines()[-1] == "all checks passed"


PRODUCTION = {
    "LUMIKU_ENVIRONMENT": "production",
    "LUMIKU_REDIS_URL": "redis://127.0.0.1:6379/15",
    "LUMIKU_AUTH_JWT_SECRET": STRONG_SECRET,
    "LUMIKU_METRICS_TOKEN": "metrics-token-abcdef",
}


def test_check_refuses_a_schema_behind_in_production_with_4(
    tmp_path: Path, postgres_empty_url: str
) -> None:
    env = {**PRODUCTION, "LUMIKU_DATABASE_URL": postgres_empty_url}
    result = lumiku(tmp_path, "--check", env=env)
    assert result.returncode == 4, result.stdout + result.stderr
    (failed,) = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failed.split()[1] == "database"
    assert "schema is behind" in failed
    assert "run `lumiku migrate`" in failed
    assert not any(line.startswith("WARN") for line in result.stdout.splitlines())
    # with database.auto_migrate, `serve` migrates in production too: a warning again
    auto = lumiku(tmp_path, "--check", env={**env, "LUMIKU_DATABASE_AUTO_MIGRATE": "true"})
    assert auto.returncode == 0, auto.stdout + auto.stderr
    assert "database.auto_migrate = true" in auto.stdout


def test_serve_refuses_a_schema_behind_in_production(
    tmp_path: Path, postgres_empty_url: str
) -> None:
    env = {**PRODUCTION, "LUMIKU_DATABASE_URL": postgres_empty_url}
    result = lumiku(tmp_path, "serve", env=env)
    assert result.returncode == 4, result.stdout + result.stderr
    assert "service.schema_mismatch" in result.stdout
    assert "lumiku migrate" in result.stdout
