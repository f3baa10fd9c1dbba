"""Cost of one access-log call (SPEC §13.1: < 20 µs on the event loop), against a baseline
in the same run: the same fields written as one bare `json.dumps` line to the same kind of
stream (the least any JSON logger can do).

Usage: .venv/bin/python bench/log_cost.py [--calls 50000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import io
import json
import time
from collections.abc import Callable

from lumiku.observability import logging as logs

FIELDS = {
    "method": "GET",
    "path": "/health/liveness",
    "route": "/health/liveness",
    "status": 200,
    "duration_ms": 0.12,
    "bytes": 19,
    "client_ip": "127.0.0.1",
}


def per_call_us(call: Callable[[], None], stream: io.StringIO, calls: int) -> float:
    start = time.perf_counter()
    for i in range(calls):
        call()
        if i % 1000 == 0:
            stream.seek(0)
            stream.truncate()
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    stream = io.StringIO()
    logs.configure(
        "info", "json", ["a-configured-secret-1234", "another-secret-abcd"], stream=stream
    )
    log = logs.get_logger("lumiku.http.access")

    def lumiku_line() -> None:
        log.info("http.access", **FIELDS)

    def bare_line() -> None:
        stream.write(json.dumps({"event": "http.access", **FIELDS}) + "\n")
        stream.flush()

    ours = min(per_call_us(lumiku_line, stream, args.calls) for _ in range(args.repeat))
    bare = min(per_call_us(bare_line, stream, args.calls) for _ in range(args.repeat))
    print(f"bare json line: {bare:.2f} us/call")
    print(f"lumiku log.info access line: {ours:.2f} us/call (budget 20 us)")
    print(f"ratio lumiku / bare = {ours / bare:.2f}")


if __name__ == "__main__":
    main()
