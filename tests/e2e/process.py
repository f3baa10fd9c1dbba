"""A real Lumiku process for tests: start it, follow its JSON log, signal it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

ROOT = Path(__file__).resolve().parents[2]


def base_env(tmp_path: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A clean environment: only PATH-like basics plus LUMIKU_ settings for this test."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    env.update(
        {
            "LUMIKU_ENVIRONMENT": "test",
            "LUMIKU_VAR_DIR": str(tmp_path / "var"),
            "LUMIKU_HTTP_BIND": "127.0.0.1:0",
            "LUMIKU_LOG_FORMAT": "json",
        }
    )
    env.update(extra or {})
    return env


@attrs.define
class ServiceProcess:
    process: trio.Process
    lines: list[dict[str, Any]] = attrs.field(factory=list)
    _new_line: trio.Event = attrs.field(factory=trio.Event)

    async def follow(self) -> None:
        """Read stdout JSON lines until the process closes it."""
        assert self.process.stdout is not None
        buffer = b""
        async for chunk in self.process.stdout:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                try:
                    self.lines.append(json.loads(raw))
                except json.JSONDecodeError:
                    self.lines.append({"event": "raw", "text": raw.decode(errors="replace")})
            self._new_line.set()
            self._new_line = trio.Event()

    async def wait_for(self, event: str) -> dict[str, Any]:
        """The first log line with `event` (waiting for it to appear)."""
        while True:
            for line in self.lines:
                if line.get("event") == event:
                    return line
            if self.process.returncode is not None:
                raise AssertionError(f"process exited before logging {event}: {self.lines}")
            await self._new_line.wait()

    def signal(self, signum: signal.Signals = signal.SIGTERM) -> None:
        self.process.send_signal(signum)


async def start(
    nursery: trio.Nursery,
    env: Mapping[str, str],
    args: Sequence[str] = ("-m", "tests.e2e.launcher"),
    pass_fds: Sequence[int] = (),
    shell_prefix: str | None = None,
) -> ServiceProcess:
    command: list[str] = [sys.executable, *args]
    if shell_prefix is not None:
        command = ["/bin/sh", "-c", shell_prefix + ' exec "$@"', "sh", *command]
    process = await trio.lowlevel.open_process(
        command, env=dict(env), cwd=ROOT, stdout=subprocess.PIPE, pass_fds=tuple(pass_fds)
    )
    service = ServiceProcess(process)
    nursery.start_soon(service.follow)
    return service
