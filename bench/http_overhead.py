"""Requests/s of Lumiku's /health/liveness against a bare hypercorn-trio ASGI app returning
the same JSON, both measured with wrk in the same run (rounds alternate, best of each kept).

Usage: .venv/bin/python bench/http_overhead.py [--duration 10] [--connections 32] [--rounds 3]
Prints one line per measurement and the ratio lumiku / bare (target >= 0.8).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listening on {port}")


def wrk(port: int, path: str, duration_s: int, connections: int) -> float:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} error responses:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def start(kind: str, port: int, var_dir: str) -> subprocess.Popen[bytes]:
    if kind == "bare":
        command = [sys.executable, str(ROOT / "bench" / "bare_app.py"), str(port)]
        env = dict(os.environ)
    else:
        command = [sys.executable, "-m", "lumiku", "serve", "--bind", f"127.0.0.1:{port}"]
        env = {**os.environ, "LUMIKU_VAR_DIR": var_dir, "LUMIKU_LOG_FORMAT": "json"}
    # The service's access log is written for real (to /dev/null), as it would be to journald.
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    wait_listening(port)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required (apt-get install wrk)")
    best = {"bare": 0.0, "lumiku": 0.0}
    with tempfile.TemporaryDirectory() as var_dir:
        for round_no in range(1, args.rounds + 1):
            for kind in ("bare", "lumiku"):
                port = free_port()
                process = start(kind, port, var_dir)
                try:
                    wrk(port, "/health/liveness", 2, args.connections)  # warm-up
                    rps = wrk(port, "/health/liveness", args.duration, args.connections)
                finally:
                    stop(process)
                best[kind] = max(best[kind], rps)
                print(f"round {round_no} {kind:<7} {rps:9.0f} req/s")
    ratio = best["lumiku"] / best["bare"]
    print(f"best: bare {best['bare']:.0f} req/s, lumiku {best['lumiku']:.0f} req/s")
    print(f"ratio lumiku/bare = {ratio:.3f} (target >= 0.8)")


if __name__ == "__main__":
    main()
