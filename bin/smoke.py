"""Smoke test of the built executable (SPEC §14); run through `bin/smoke [BINARY]`.

In a temporary working directory, on the embedded default (no LUMIKU_* settings from the
caller's environment; `--database-url`/`--redis-url` swap in PostgreSQL and Redis, whose
database must be empty): `--version`; `--check` (exit 0 with a warning: the fresh schema
is behind, which `serve` would migrate outside production); `migrate`; `--check` (exit 0,
no warning); `serve` on a free port until `/health/readiness` answers 200;
one user registered and one Avatar Creator generation run through the HTTP API until its
image downloads; SIGTERM; exit 0. Prints the binary's size and the start-to-ready time, and
exits 1 with a message naming the failed step. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

MAX_BYTES = int(os.environ.get("LUMIKU_SMOKE_MAX_MB", "60")) * 1_000_000
STEP_TIMEOUT_S = 60.0
PASSWORD = "Tr0ub4dor&3-horse"


class SmokeFailed(Exception):
    pass


def step(name: str) -> None:
    print(f"smoke: {name}", file=sys.stderr, flush=True)


BACKENDS: dict[str, str] = {}  # LUMIKU_DATABASE_URL / LUMIKU_REDIS_URL from the options


def clean_env(workdir: Path) -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(BACKENDS)
    env.update(
        {"HOME": str(workdir), "LUMIKU_LOG_FORMAT": "json", "LUMIKU_HTTP_BIND": "127.0.0.1:0"}
    )
    return env


def run(binary: Path, workdir: Path, *args: str, expect: int) -> str:
    result = subprocess.run(
        [str(binary), *args],
        cwd=workdir,
        env=clean_env(workdir),
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        check=False,
    )
    if result.returncode != expect:
        raise SmokeFailed(
            f"`lumiku {' '.join(args)}` exited {result.returncode}, expected {expect}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


def http(
    method: str, url: str, body: Any = None, token: str = "", timeout_s: float = 10.0
) -> tuple[int, dict[str, str], bytes]:
    headers = {"content-type": "application/json"} if body is not None else {}
    if token:
        headers["authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def call(method: str, url: str, body: Any = None, token: str = "", expect: int = 200) -> Any:
    status, _, payload = http(method, url, body, token)
    if status != expect:
        raise SmokeFailed(f"{method} {url} answered {status}, expected {expect}: {payload[:500]!r}")
    return json.loads(payload)


class LogFollower:
    """Collects the service's JSON log lines from its stdout on a thread."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.lines: list[dict[str, Any]] = []
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                line = {"event": "raw", "text": raw.decode(errors="replace").rstrip()}
            with self.changed:
                self.lines.append(line)
                self.changed.notify_all()
        with self.changed:
            self.lines.append({"event": "<stdout closed>"})
            self.changed.notify_all()

    def wait_for(self, event: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while True:
                for line in self.lines:
                    if line.get("event") == event:
                        return line
                    if line.get("event") == "<stdout closed>":
                        raise SmokeFailed(f"the service exited before logging {event}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SmokeFailed(f"no {event} log line within {timeout_s} s")
                self.changed.wait(left)


def until(what: str, timeout_s: float, probe: Any) -> Any:
    """Call `probe()` until it returns something truthy; fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SmokeFailed(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def ready_probe(url: str) -> bool:
    try:
        return http("GET", url, timeout_s=1)[0] == 200
    except OSError:
        return False


def generate_avatar(base: str) -> int:
    """Register, create a project, generate an avatar, wait for it, download it; its bytes."""
    user = call(
        "POST",
        f"{base}/api/auth/register",
        {"email": "smoke@example.com", "password": PASSWORD},
        expect=201,
    )
    token = user["token"]
    app = f"{base}/api/apps/avatar-creator"
    project = call("POST", f"{app}/projects", {"name": "Smoke"}, token, expect=201)["project"]
    generated = call(
        "POST",
        f"{app}/projects/{project['id']}/avatars/generate",
        {"name": "Ana", "prompt": "a friendly portrait in warm light", "width": 512},
        token,
        expect=202,
    )
    generation_url = f"{app}/generations/{generated['generation']['id']}"

    def finished() -> dict[str, Any] | None:
        view = call("GET", generation_url, token=token)["generation"]
        return view if view["status"] in ("succeeded", "failed", "cancelled") else None

    view = until("the avatar generation to finish", STEP_TIMEOUT_S, finished)
    if view["status"] != "succeeded":
        raise SmokeFailed(f"the avatar generation ended {view['status']}: {view}")
    status, headers, image = http("GET", f"{base}{view['avatar']['image_url']}")
    content_type = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
    if status != 200 or not content_type.startswith("image/") or not image:
        raise SmokeFailed(f"the avatar image answered {status} {content_type} ({len(image)} bytes)")
    return len(image)


def serve(binary: Path, workdir: Path) -> float:
    """Run `serve` through one generation and a SIGTERM; the start-to-ready time in s."""
    started = time.monotonic()
    process = subprocess.Popen(
        [str(binary), "serve"], cwd=workdir, env=clean_env(workdir), stdout=subprocess.PIPE
    )
    try:
        follower = LogFollower(process)
        ready = follower.wait_for("service.ready", STEP_TIMEOUT_S)
        base = str(ready["addresses"][0])
        until(
            "/health/readiness 200", STEP_TIMEOUT_S, lambda: ready_probe(f"{base}/health/readiness")
        )
        ready_s = time.monotonic() - started
        step(f"ready at {base} after {ready_s:.2f} s")
        image_bytes = generate_avatar(base)
        step(f"avatar generated and downloaded ({image_bytes} bytes)")
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=STEP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise SmokeFailed("the service did not exit within 60 s of SIGTERM") from None
        if code != 0:
            raise SmokeFailed(f"the service exited {code} after SIGTERM, expected 0")
        follower.wait_for("service.stopped", 5)
        return ready_s
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def smoke(binary: Path) -> None:
    if not os.access(binary, os.X_OK):
        raise SmokeFailed(f"{binary} is not an executable file (run bin/build first)")
    size = binary.stat().st_size
    if size > MAX_BYTES:
        raise SmokeFailed(
            f"{binary} is {size / 1e6:.1f} MB, over the {MAX_BYTES / 1e6:.0f} MB limit"
        )
    with tempfile.TemporaryDirectory(prefix="lumiku-smoke-") as tmp:
        workdir = Path(tmp)
        version = run(binary, workdir, "--version", expect=0)
        if "(commit " not in version:
            raise SmokeFailed(f"--version does not name the commit: {version!r}")
        step(version.splitlines()[0])
        behind = run(binary, workdir, "--check", expect=0)  # `serve` would migrate it
        if "WARN  database" not in behind or "schema is behind" not in behind:
            raise SmokeFailed(f"--check on a fresh database does not warn it is behind:\n{behind}")
        run(binary, workdir, "migrate", expect=0)
        checked = run(binary, workdir, "--check", expect=0)
        if "all checks passed" not in checked:
            raise SmokeFailed(f"--check passed without saying so:\n{checked}")
        database = BACKENDS.get("LUMIKU_DATABASE_URL", "the embedded default")
        step(f"--check: all checks passed on {database}")
        ready_s = serve(binary, workdir)
    print(f"smoke: OK  binary {size / 1e6:.1f} MB ({size} bytes), start-to-ready {ready_s:.2f} s")


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    parser = argparse.ArgumentParser(prog="bin/smoke", description=__doc__.split("\n")[0])
    parser.add_argument("binary", nargs="?", type=Path, default=root / "dist" / "lumiku")
    parser.add_argument("--database-url", help="an EMPTY PostgreSQL database instead of SQLite")
    parser.add_argument("--redis-url", help="Redis instead of the in-process bus")
    args = parser.parse_args()
    if args.database_url:
        BACKENDS["LUMIKU_DATABASE_URL"] = args.database_url
    if args.redis_url:
        BACKENDS["LUMIKU_REDIS_URL"] = args.redis_url
    binary: Path = args.binary
    try:
        smoke(binary.resolve())
    except SmokeFailed as exc:
        print(f"smoke: FAILED: {exc}", file=sys.stderr)
        return 1
    except (OSError, subprocess.SubprocessError, KeyError, ValueError) as exc:
        print(f"smoke: FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
