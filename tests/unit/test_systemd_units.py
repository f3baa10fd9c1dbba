"""The unit files in systemd/ (SPEC §14): `systemd-analyze verify` accepts them without a
single warning, and they say what the spec asks."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lumiku.config import load_settings
from lumiku.settings import SPECS, ShutdownSettings
from tests.services import _unavailable

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "systemd"
SERVICES = ("lumiku.service", "lumiku@.service")
EXECUTABLE = "usr/local/bin/lumiku"
SYSTEM_UNITS = Path("/usr/lib/systemd/system")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A filesystem root as on an installed host: the units in /etc/systemd/system, the
    executable at the path they name (a stand-in: verify checks only that it is executable;
    the real one is tested in tests/e2e/test_binary.py), and systemd's own units, which the
    verifier loads for the dependencies (sysinit.target, ...)."""
    if shutil.which("systemd-analyze") is None or not SYSTEM_UNITS.is_dir():
        _unavailable("systemd-analyze", "not installed, so the unit files are not verified")
    units = tmp_path / "etc/systemd/system"
    units.mkdir(parents=True)
    for unit in UNITS.glob("lumiku*"):
        if unit.suffix in (".service", ".socket"):
            shutil.copy(unit, units)
    executable = tmp_path / EXECUTABLE
    executable.parent.mkdir(parents=True)
    executable.write_text("#!/bin/sh\nexit 0\n")
    executable.chmod(0o755)
    shutil.copytree(SYSTEM_UNITS, tmp_path / "usr/lib/systemd/system", symlinks=True)
    return tmp_path


def analyze(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", f"--root={root}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_units_verify_without_errors_or_warnings(root: Path) -> None:
    names = sorted(p.name for p in (root / "etc/systemd/system").iterdir())
    assert names == ["lumiku.service", "lumiku.socket", "lumiku@.service"]
    result = analyze(root, "verify", *(str(root / "etc/systemd/system" / n) for n in names))
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_verify_does_catch_a_broken_unit(root: Path) -> None:
    """The test above can fail: a misspelt key and a bad value are reported."""
    unit = root / "etc/systemd/system/lumiku.service"
    unit.write_text(unit.read_text().replace("KillMode=mixed", "KillMod=mixed\nTimeoutStopSec=x"))
    result = analyze(root, "verify", str(unit))
    assert "Unknown key 'KillMod'" in result.stderr
    assert "Failed to parse" in result.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_services_are_hardened(root: Path, service: str) -> None:
    # exposure 0.0 (locked down) ... 10.0 (unprotected); the units score about 1.6
    unit = str(root / "etc/systemd/system" / service)
    result = analyze(root, "security", "--offline=true", "--threshold=25", unit)
    assert result.returncode == 0, result.stdout + result.stderr


def service_section(name: str) -> dict[str, list[str]]:
    """The [Service] directives of a unit file, each with all its values (keys repeat)."""
    found: dict[str, list[str]] = {}
    section = ""
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
        elif section == "Service" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_services_say_what_the_spec_asks(service: str) -> None:
    unit = service_section(service)
    assert unit["Type"] == ["notify"]
    assert unit["WatchdogSec"] == ["30"]
    assert unit["ExecStartPre"] == ["/usr/local/bin/lumiku --check"]
    assert unit["ExecStart"] == ["/usr/local/bin/lumiku serve"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["KillMode"] == ["mixed"]
    assert unit["StateDirectory"] == ["lumiku"]
    # journald files each line under the priority it starts with, for this identifier
    assert unit["SyslogIdentifier"] == ["lumiku"]
    assert unit.get("SyslogLevelPrefix", ["yes"]) == ["yes"]
    assert unit["EnvironmentFile"][0] == "-/etc/lumiku/lumiku.env"
    # the embedded default's state lives in the StateDirectory
    assert "LUMIKU_VAR_DIR=%S/lumiku" in unit["Environment"]
    for key in ("ProtectHome", "PrivateTmp", "NoNewPrivileges"):
        assert unit[key] == ["yes"]
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert "@system-service" in unit["SystemCallFilter"]
    # in-flight work gets shutdown.grace_s, and systemd waits at least 10 s more
    grace_s = ShutdownSettings().grace_s
    assert float(unit["TimeoutStopSec"][0].removesuffix("s")) >= grace_s + 10


def test_instances_share_the_port() -> None:
    assert "LUMIKU_HTTP_REUSE_PORT=true" in service_section("lumiku@.service")["Environment"]


def environment_of(service: str, state_dir: Path) -> dict[str, str]:
    """The Environment= of `service` as systemd sets it (%S = /var/lib, here `state_dir`)."""
    pairs = (
        value.replace("%S", str(state_dir)).split("=", 1)
        for value in service_section(service)["Environment"]
    )
    return dict(pairs)


@pytest.mark.parametrize("service", SERVICES)
def test_the_units_environment_is_read_as_intended(service: str, tmp_path: Path) -> None:
    settings = load_settings(environ=environment_of(service, tmp_path), default_path="")
    assert settings.var_dir == f"{tmp_path}/lumiku"
    assert settings.database.url == f"sqlite:///{tmp_path}/lumiku/lumiku.db"
    assert settings.storage.path == f"{tmp_path}/lumiku/files"
    assert settings.http.reuse_port is (service == "lumiku@.service")


def test_the_example_env_file_names_real_settings() -> None:
    names = [
        line.lstrip("#").split("=", 1)[0]
        for line in (UNITS / "lumiku.env.example").read_text().splitlines()
        if line.lstrip("#").startswith("LUMIKU_")
    ]
    assert names
    for name in names:
        key = name.removeprefix("LUMIKU_").lower()
        assert any(spec.key.replace(".", "_") == key for spec in SPECS), name
