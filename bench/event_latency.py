"""Publish-to-receipt latency of job progress events for 1000 websocket clients: the real
service against a bare hypercorn websocket app sending the same messages (bench/bare_ws.py),
measured in the same run.

Lumiku (bench/event_server.py, the embedded default or `--backend postgres` with Redis):
register `--clients` users over HTTP, open one `/api/ws?token=…` per user and wait for its
`ready`, then queue one `bench.progress` job per user through `POST /api/_test/jobs`. Every
job starts `--lead` seconds after the last client connected (all are queued by then), waits
a random part of one interval (so the events do not fall on the same instants), then sends
`--events` progress events `--interval` seconds apart; the kind's concurrency is
`--clients`, so every job runs at once: about clients / interval events per second. The
bare app gets the same clients, message shapes and schedule.

Per progress event the client records receipt − `ts` (the event's timestamp, set when the
worker publishes it) and, Lumiku only, receipt − the handler's own `time.time()` just
before `ctx.progress()` (carried as the stage text). `ts` is ISO-8601 truncated to the
MILLISECOND (events.utc_now), so ts-based figures read 0–1 ms (0.5 ms on average) high, on
both sides alike. Each run also reports the server's CPU time over the event phase per
progress event (from /proc), and the clients' share of a CPU.

The server runs in its own process, the clients in this one; neither is pinned unless
`--pin` (server on CPU 1, clients on CPU 0). Each round measures Lumiku and bare back to
back (Lumiku first in odd rounds); the figures are the medians over rounds of each round's
p50 and p99 and of each round's ratio Lumiku / bare.

Usage: .venv/bin/python bench/event_latency.py [--clients 1000] [--events 10] [--interval 1]
       [--rounds 3] [--backend sqlite|postgres] [--pin] [--py-spy PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, Final

import attrs
import httpx
import trio
from http_overhead import free_port, wait_listening
from ws_client import connect

ROOT: Final = Path(__file__).resolve().parents[1]
BENCH: Final = Path(__file__).resolve().parent
PASSWORD: Final = "Tr0ub4dor&3-horse"
CONNECTING: Final = 50  # handshakes in flight at once (hypercorn's backlog is 100)
HTTP_CALLS: Final = 16  # registrations / submissions in flight at once


def epoch_of(ts: str) -> float:
    return dt.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


class Samples:
    """Latencies in ms: from `ts` and from the handler's call (stage text)."""

    def __init__(self) -> None:
        self.from_ts: list[float] = []
        self.from_call: list[float] = []
        self.by_step: dict[int, list[float]] = {}

    def record(self, received_at: float, event: dict[str, Any]) -> None:
        latency_ms = (received_at - epoch_of(event["ts"])) * 1000
        self.from_ts.append(latency_ms)
        self.from_call.append((received_at - float(event["data"]["stage"])) * 1000)
        self.by_step.setdefault(int(event["data"]["completed"]), []).append(latency_ms)

    def step_p99s(self) -> str:
        """p99 per progress step (the 1st report of every job comes right after the burst
        of starts; later ones are steady state)."""
        return ", ".join(
            f"{step}: {percentile(values, 0.99):.0f}"
            for step, values in sorted(self.by_step.items())
        )

    def summary(self) -> dict[str, float]:
        return {
            "p50": percentile(self.from_ts, 0.50),
            "p99": percentile(self.from_ts, 0.99),
            "max": max(self.from_ts),
            "call_p50": percentile(self.from_call, 0.50),
            "call_p99": percentile(self.from_call, 0.99),
            "events": len(self.from_ts),
        }


def progress_reader(samples: Samples) -> Callable[[float, str], bool]:
    """An `on_message` that records progress events and stops at the job's terminal one."""

    def on_message(received_at: float, text: str) -> bool:
        event = json.loads(text)
        kind = event.get("type")
        if kind == "generation:progress":
            samples.record(received_at, event)
        elif kind in ("generation:failed", "generation:cancelled"):
            raise SystemExit(f"a bench job ended {kind}: {text}")
        return bool(kind == "generation:completed")

    return on_message


@attrs.define
class Probe:
    """The server process seen from outside: its CPU time, and py-spy sampling it (without
    pausing it) from the jobs' start on, when `py_spy` names an output file (raw format)."""

    pid: int
    py_spy: str | None = None
    spy: subprocess.Popen[bytes] | None = None

    def cpu_s(self) -> float:
        """User + system CPU time of the process (all its threads) so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def jobs_started(self) -> None:
        if self.py_spy:
            spy = str(Path(sys.executable).with_name("py-spy"))
            command = [spy, "record", "--pid", str(self.pid), "--nonblocking"]
            command += ["--format", "raw", "-o", self.py_spy]
            self.spy = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )

    def close(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
            self.spy.wait(timeout=60)


@attrs.define
class Clients:
    """What the clients of one run share: the samples, and the plan once it is set."""

    port: int
    expected: int
    samples: Samples = attrs.field(factory=Samples)
    connecting: trio.CapacityLimiter = attrs.field(factory=lambda: trio.CapacityLimiter(CONNECTING))
    connected: int = 0
    all_connected: trio.Event = attrs.field(factory=trio.Event)
    plan: str = ""
    go: trio.Event = attrs.field(factory=trio.Event)

    async def watch(self, target: str, sends_plan: bool) -> None:
        """One client: connect, wait for `ready`, then read progress until its job ends.
        A bare client sends the plan itself (the bare app's "submission")."""
        async with contextlib.AsyncExitStack() as stack:
            async with self.connecting:
                client = await stack.enter_async_context(connect("127.0.0.1", self.port, target))
            await client.read_messages(lambda _at, text: json.loads(text)["type"] == "ready")
            self.connected += 1
            if self.connected == self.expected:
                self.all_connected.set()
            if sends_plan:
                await self.go.wait()
                await client.send(self.plan)
            await client.read_messages(progress_reader(self.samples))


async def in_parallel(calls: list[Callable[[], Any]], limit: int) -> list[Any]:
    """Await every call, at most `limit` at once; results in order."""
    results: list[Any] = [None] * len(calls)
    limiter = trio.CapacityLimiter(limit)

    async def one(index: int) -> None:
        async with limiter:
            results[index] = await calls[index]()

    async with trio.open_nursery() as nursery:
        for index in range(len(calls)):
            nursery.start_soon(one, index)
    return results


async def drive(
    port: int,
    probe: Probe,
    args: argparse.Namespace,
    lumiku: bool,
    timeout_s: float,
) -> dict[str, float]:
    """Connect the clients, queue their jobs (all starting `--lead` s after the last client
    connected), collect every progress event. CPU use is counted from the start on."""
    clients = Clients(port, args.clients)
    with trio.fail_after(timeout_s):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            targets = ["/"] * args.clients
            tokens: list[str] = []
            if lumiku:
                emails = [f"bench{i}@example.com" for i in range(args.clients)]
                bodies = await in_parallel([partial(register, http, e) for e in emails], HTTP_CALLS)
                tokens = [body["token"] for body in bodies]
                targets = [f"/api/ws?token={token}" for token in tokens]
            async with trio.open_nursery() as nursery:
                for target in targets:
                    nursery.start_soon(clients.watch, target, not lumiku)
                await clients.all_connected.wait()
                # The bare app's "submission" is instant: it needs no lead for queueing.
                go_at = time.time()
                start_at = go_at + (args.lead if lumiku else 1.0)
                plan = {"events": args.events, "interval_s": args.interval, "start_at": start_at}
                clients.plan = json.dumps(plan)
                clients.go.set()
                if lumiku:
                    await in_parallel([partial(submit, http, t, plan) for t in tokens], HTTP_CALLS)
                queued_at = time.time()
                await trio.sleep(max(0.0, start_at - time.time()))
                probe.jobs_started()
                cpu_at_start = probe.cpu_s(), time.process_time()
            elapsed_s = time.time() - start_at
            server_cpu_s = probe.cpu_s() - cpu_at_start[0]
            client_cpu_s = time.process_time() - cpu_at_start[1]
    expected = args.clients * args.events
    if len(clients.samples.from_ts) != expected:
        raise SystemExit(f"received {len(clients.samples.from_ts)} progress events, not {expected}")
    if queued_at > start_at:
        late_s = queued_at - start_at
        print(f"warning: the last job was queued {late_s:.1f} s after start_at; raise --lead")
    print(f"  p99 per progress step (ms): {clients.samples.step_p99s()}", flush=True)
    return {
        **clients.samples.summary(),
        "elapsed_s": elapsed_s,
        "queue_s": queued_at - go_at,
        "server_cpu": server_cpu_s / elapsed_s,
        "client_cpu": client_cpu_s / elapsed_s,
    }


async def register(http: httpx.AsyncClient, email: str) -> dict[str, Any]:
    response = await http.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    if response.status_code != 201:
        raise SystemExit(f"register: {response.status_code} {response.text}")
    body: dict[str, Any] = response.json()
    return body


async def submit(http: httpx.AsyncClient, token: str, payload: dict[str, Any]) -> None:
    response = await http.post(
        "/api/_test/jobs",
        json={"app": "bench", "kind": "bench.progress", "payload": payload, "cost": 0},
        headers={"authorization": f"Bearer {token}"},
    )
    if response.status_code != 202:
        raise SystemExit(f"submit: {response.status_code} {response.text}")


@contextlib.contextmanager
def server(kind: str, args: argparse.Namespace, database_url: str) -> Iterator[tuple[int, int]]:
    """The bare app or the service on a free port, as (port, pid); stopped with SIGTERM."""
    port = free_port()
    with tempfile.TemporaryDirectory() as var_dir:
        if kind == "bare":
            command = [sys.executable, str(BENCH / "bare_ws.py"), str(port)]
            env = dict(os.environ)
        else:
            command = [sys.executable, str(BENCH / "event_server.py"), str(args.clients)]
            env = {
                **os.environ,
                "LUMIKU_VAR_DIR": var_dir,
                "LUMIKU_HTTP_BIND": f"127.0.0.1:{port}",
                "LUMIKU_LOG_FORMAT": "json",
                "LUMIKU_RATELIMIT_ENABLED": "false",
                "LUMIKU_AUTH_ARGON2_TIME_COST": "1",
                "LUMIKU_AUTH_ARGON2_MEMORY_KIB": "1024",
                "LUMIKU_AUTH_ARGON2_PARALLELISM": "1",
                "LUMIKU_DATABASE_URL": database_url,
                "LUMIKU_REDIS_URL": args.redis_url if database_url else "",
            }
        # The service's log is written for real (to /dev/null), as it would be to journald.
        pin = ["taskset", "-c", "1"] if args.pin else []
        process = subprocess.Popen([*pin, *command], cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        try:
            wait_listening(port, timeout_s=30)
            yield port, process.pid
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)


def measure(kind: str, args: argparse.Namespace) -> dict[str, float]:
    with contextlib.ExitStack() as stack:
        database_url = ""
        if kind == "lumiku" and args.backend == "postgres":
            from scratch_db import scratch_database

            database_url = stack.enter_context(scratch_database("bench_events"))
        port, pid = stack.enter_context(server(kind, args, database_url))
        probe = Probe(pid, args.py_spy if kind == "lumiku" else None)
        stack.callback(probe.close)
        timeout_s = 120 + args.events * args.interval
        return trio.run(drive, port, probe, args, kind == "lumiku", timeout_s)


def describe(result: dict[str, float], lumiku: bool) -> str:
    text = f"ts→receipt p50 {result['p50']:.1f} p99 {result['p99']:.1f} max {result['max']:.1f} ms"
    if lumiku:
        text += f"; call→receipt p50 {result['call_p50']:.1f} p99 {result['call_p99']:.1f} ms"
    text += (
        f"; {result['events'] / result['elapsed_s']:.0f} events/s"
        f", server CPU {100 * result['server_cpu']:.0f} %"
        f" ({1000 * result['server_cpu'] * result['elapsed_s'] / result['events']:.2f} ms/event)"
        f", clients' CPU {100 * result['client_cpu']:.0f} %"
    )
    if lumiku:
        text += f"; jobs queued over HTTP in {result['queue_s']:.1f} s"
    return text


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--events", type=int, default=10, help="progress events per job")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between them")
    parser.add_argument(
        "--lead", type=float, default=15.0, help="seconds from the last connect to the jobs' start"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="server on CPU 1, clients on CPU 0 (off by default: see the README)",
    )
    parser.add_argument(
        "--py-spy", metavar="PATH", help="profile Lumiku's server into PATH (raw format)"
    )
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {0})
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, list[dict[str, float]]] = {"lumiku": [], "bare": []}
    for round_no in range(1, args.rounds + 1):
        for kind in ("lumiku", "bare") if round_no % 2 else ("bare", "lumiku"):
            result = measure(kind, args)
            results[kind].append(result)
            print(f"round {round_no} {kind}: {describe(result, kind == 'lumiku')}", flush=True)
    for kind, runs in results.items():
        print(
            f"{kind}: median p50 {statistics.median(r['p50'] for r in runs):.1f} ms, "
            f"median p99 {statistics.median(r['p99'] for r in runs):.1f} ms "
            f"(p99 range {min(r['p99'] for r in runs):.1f}–{max(r['p99'] for r in runs):.1f}, "
            f"{int(runs[0]['events'])} events per round)"
        )
    runs = results["lumiku"]
    call_p50 = statistics.median(r["call_p50"] for r in runs)
    call_p99 = statistics.median(r["call_p99"] for r in runs)
    print(f"lumiku handler call → receipt: median p50 {call_p50:.1f}, p99 {call_p99:.1f} ms")
    for key in ("p50", "p99"):
        ratios = [lum[key] / bare[key] for lum, bare in zip(runs, results["bare"], strict=True)]
        print(
            f"median ratio lumiku / bare {key} = {statistics.median(ratios):.2f} "
            f"(min {min(ratios):.2f}, max {max(ratios):.2f})"
        )
    print("target: lumiku p99 < 50 ms (ts → receipt, loopback)")


if __name__ == "__main__":
    main()
