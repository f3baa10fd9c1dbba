"""The real process as operators run it: under Kubernetes (service-link variables) and
under systemd with its output in the journal (syslog priority prefixes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e.process import ROOT, base_env, start

pytestmark = pytest.mark.slow

SERVICE_LINKS = {
    "LUMIKU_PORT": "tcp://127.0.0.9:8000",
    "LUMIKU_PORT_8000_TCP": "tcp://127.0.0.9:8000",
    "LUMIKU_PORT_8000_TCP_ADDR": "127.0.0.9",
    "LUMIKU_SERVICE_HOST": "127.0.0.9",
    "LUMIKU_SERVICE_PORT": "8000",
}


def port_of(ready: dict[str, object]) -> int:
    addresses = ready["addresses"]
    assert isinstance(addresses, list)
    return int(str(addresses[0]).rsplit(":", 1)[1])


async def test_kubernetes_service_links_are_ignored_with_one_line(tmp_path: Path) -> None:
    env = base_env(tmp_path, SERVICE_LINKS)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            service = await start(nursery, env, args=("-m", "lumiku", "serve"))
            port = port_of(await service.wait_for("service.ready"))
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/health/readiness")
            assert response.status_code == 200
            service.signal()
            assert await service.process.wait() == 0
    ignored = [line for line in service.lines if line["event"] == "config.service_links_ignored"]
    assert len(ignored) == 1
    assert ignored[0]["names"] == sorted(SERVICE_LINKS)
    assert ignored[0]["level"] == "info"


def lumiku(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lumiku", *args],
        env=base_env(tmp_path, env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_misspelt_setting_beside_service_links_still_stops_the_start(tmp_path: Path) -> None:
    typo = {**SERVICE_LINKS, "LUMIKU_DATABSE_URL": "postgresql://postgres@127.0.0.1/x"}
    result = lumiku(tmp_path, "serve", env=typo)
    assert result.returncode == 2, result.stdout + result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(problems) == 1
    assert "LUMIKU_DATABSE_URL" in problems[0]
    assert "unknown setting" in problems[0]
    check = lumiku(tmp_path, "--check", env=SERVICE_LINKS)
    assert "5 Kubernetes service link(s) ignored" in check.stdout


def test_under_journald_each_line_starts_with_its_syslog_priority(tmp_path: Path) -> None:
    """systemd sets JOURNAL_STREAM to the device and inode of the stream it connected to the
    journal; a pipe stands in for it. The database is unreachable, so the start logs info
    lines and then an error, and exits 1."""
    read_end, write_end = os.pipe()
    st = os.fstat(write_end)
    env = {
        "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}",
        "LUMIKU_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/nowhere",
        "LUMIKU_DATABASE_CONNECT_TIMEOUT_S": "2",
    }
    with os.fdopen(read_end, "rb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "lumiku", "serve"],
            env=base_env(tmp_path, env),
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.DEVNULL,
        )
        os.close(write_end)
        text = output.read().decode()
    assert process.wait(timeout=60) == 1
    lines = text.splitlines()
    assert lines
    assert all(line[:3] in ("<3>", "<4>", "<6>", "<7>") for line in lines), lines
    prefixes = {"error": "<3>", "warning": "<4>", "info": "<6>", "debug": "<7>"}
    levels = [json.loads(line[3:])["level"] for line in lines]
    assert [line[:3] for line in lines] == [prefixes[level] for level in levels]
    assert {"info", "error"} <= set(levels)
    assert lines[0].startswith('<6>{"ts":')


def test_without_the_journal_lines_are_plain_json(tmp_path: Path) -> None:
    # JOURNAL_STREAM inherited, but stdout goes elsewhere (a pipe of ours): no prefixes.
    env = {"JOURNAL_STREAM": "1:2", "LUMIKU_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/x"}
    result = lumiku(tmp_path, "serve", env={**env, "LUMIKU_DATABASE_CONNECT_TIMEOUT_S": "2"})
    assert result.returncode == 1
    levels = [json.loads(line)["level"] for line in result.stdout.splitlines()]
    assert {"info", "error"} <= set(levels)
