"""Requests/s of Lumiku against a bare hypercorn-trio ASGI app returning the same JSON, all
measured with wrk in the same run.

Two Lumiku paths are measured against the same baseline:
- /health/liveness: answered by the edge middleware (request id, security headers, access
  log line) without entering quart — the target of issue 2 (ratio >= 0.8);
- /health/readiness: a quart route (cached result), i.e. what every API route pays for
  routing and the request context on top of the edge.

Each round measures bare, then each Lumiku path, back to back; the reported figure is the
median over rounds of each round's ratio (paired, so slow phases of a noisy host cancel
out). Servers run pinned to one CPU and wrk to another when the host has two or more.

Usage: .venv/bin/python bench/http_overhead.py [--duration 5] [--connections 32] [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PIN = (os.cpu_count() or 1) >= 2
SERVER_CPU = ["taskset", "-c", "1"] if PIN else []
CLIENT_CPU = ["taskset", "-c", "0"] if PIN else []
RUNS = [
    ("bare", "/health/liveness"),
    ("lumiku", "/health/liveness"),
    ("lumiku", "/health/readiness"),
]


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
        [
            *CLIENT_CPU,
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{duration_s}s",
            f"http://127.0.0.1:{port}{path}",
        ],
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
    process = subprocess.Popen(
        [*SERVER_CPU, *command], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    wait_listening(port)
    return process


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)


def measure(kind: str, path: str, var_dir: str, duration_s: int, connections: int) -> float:
    port = free_port()
    process = start(kind, port, var_dir)
    try:
        wrk(port, path, 1, connections)  # warm-up
        return wrk(port, path, duration_s, connections)
    finally:
        stop(process)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required (apt-get install wrk)")
    ratios: dict[str, list[float]] = {path: [] for _kind, path in RUNS[1:]}
    with tempfile.TemporaryDirectory() as var_dir:
        for round_no in range(1, args.rounds + 1):
            bare = measure(*RUNS[0], var_dir, args.duration, args.connections)
            line = [f"round {round_no}: bare {bare:.0f}"]
            for kind, path in RUNS[1:]:
                rps = measure(kind, path, var_dir, args.duration, args.connections)
                ratios[path].append(rps / bare)
                line.append(f"{path} {rps:.0f} ({rps / bare:.3f})")
            print(", ".join(line), "req/s", flush=True)
    for path, values in ratios.items():
        print(
            f"median ratio lumiku {path} / bare = {statistics.median(values):.3f} "
            f"(min {min(values):.3f}, max {max(values):.3f}, {len(values)} rounds)"
        )
    print("target: /health/liveness >= 0.8")


if __name__ == "__main__":
    main()
