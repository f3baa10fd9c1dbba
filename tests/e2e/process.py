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
    closed: bool = False
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
            self._wake()
        self.closed = True
        self._wake()

    def _wake(self) -> None:
        self._new_line.set()
        self._new_line = trio.Event()

    async def wait_for(self, event: str) -> dict[str, Any]:
        """The first log line with `event` (waiting for it to appear)."""
        while True:
            for line in self.lines:
                if line.get("event") == event:
                    return line
            if self.closed:
                code = await self.process.wait()
                raise AssertionError(
                    f"process exited ({code}) before logging {event}: {self.lines}"
                )
            await self._new_line.wait()

    def signal(self, signum: signal.Signals = signal.SIGTERM) -> None:
        self.process.send_signal(signum)


# What systemd does when it starts a service: the process it exec's is the one named in
# LISTEN_PID and WATCHDOG_PID (known only after the fork, so a wrapper sets them), and for
# socket activation the passed socket becomes fd 3. Usage:
#   python -c _AS_SYSTEMD <fd or -> <VAR,VAR...> command...
_AS_SYSTEMD = """
import os, sys
fd, names, *command = sys.argv[1:]
if fd != "-":
    os.dup2(int(fd), 3)
for name in filter(None, names.split(",")):
    os.environ[name] = str(os.getpid())
os.execv(command[0], command)
"""


def python_command(*args: str) -> tuple[str, ...]:
    """This interpreter running `args` (e.g. "-m", "lumiku", "serve")."""
    return (sys.executable, *args)


async def start(
    nursery: trio.Nursery,
    env: Mapping[str, str],
    args: Sequence[str] = ("-m", "tests.e2e.launcher"),
    activate_fd: int | None = None,
    command: Sequence[str] | None = None,
    pid_vars: Sequence[str] = (),
) -> ServiceProcess:
    """Start the service process (`command`, else this Python with `args`).

    With `activate_fd`, that socket is handed over as systemd does (fd 3, LISTEN_PID); each
    variable in `pid_vars` (e.g. WATCHDOG_PID) is set to the started process's pid.
    """
    argv = list(command) if command is not None else list(python_command(*args))
    pass_fds: tuple[int, ...] = ()
    names = list(pid_vars)
    if activate_fd is not None:
        names.append("LISTEN_PID")
        pass_fds = (activate_fd,)
    if names:
        fd = str(activate_fd) if activate_fd is not None else "-"
        argv = [sys.executable, "-c", _AS_SYSTEMD, fd, ",".join(names), *argv]
    process = await trio.lowlevel.open_process(
        argv, env=dict(env), cwd=ROOT, stdout=subprocess.PIPE, pass_fds=pass_fds
    )
    service = ServiceProcess(process)
    nursery.start_soon(service.follow)
    return service
