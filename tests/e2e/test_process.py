"""The real process: graceful shutdown, forced exit, systemd notify and socket activation."""

from __future__ import annotations

import json
import signal
import socket
import struct
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

from tests.e2e.harness import register
from tests.e2e.process import base_env, start
from tests.e2e.wsclient import Closed, connect

pytestmark = pytest.mark.slow

GRACE_S = 5.0


async def wait_until_refused(port: int) -> None:
    """Return once a new connection to `port` is refused (the listener closed)."""
    with trio.fail_after(2):
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except ConnectionRefusedError:
                return
            await trio.sleep(0.01)


def port_of(ready: dict[str, object]) -> int:
    addresses = ready["addresses"]
    assert isinstance(addresses, list)
    return int(str(addresses[0]).rsplit(":", 1)[1])


async def test_sigterm_drains_in_flight_requests_then_exits_0(tmp_path: Path) -> None:
    env = base_env(tmp_path, {"LUMIKU_SHUTDOWN_GRACE_S": str(GRACE_S)})
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            service = await start(nursery, env)
            port = port_of(await service.wait_for("service.ready"))
            base = f"http://127.0.0.1:{port}"
            slow_result: dict[str, httpx.Response] = {}

            async def slow_request() -> None:
                async with httpx.AsyncClient(timeout=10) as client:
                    slow_result["response"] = await client.get(f"{base}/api/_test/slow?s=2")

            async with httpx.AsyncClient(base_url=base) as client:
                token = (await register(client, "drain@example.com"))["token"]
            async with connect(f"ws://127.0.0.1:{port}/api/ws?token={token}") as ws:
                assert json.loads(await ws.receive())["type"] == "ready"
                nursery.start_soon(slow_request)
                await service.wait_for("test.slow_started")
                signalled_at = time.monotonic()
                service.signal(signal.SIGTERM)
                await service.wait_for("service.draining")
                # the open websocket is told the server is going away
                with pytest.raises(Closed) as closed:
                    await ws.receive()
                assert closed.value.code == 1001
            # new connections are refused while the slow request is still running
            await wait_until_refused(port)
            assert "response" not in slow_result
            exit_code = await service.process.wait()
            elapsed = time.monotonic() - signalled_at
    assert slow_result["response"].status_code == 200
    assert slow_result["response"].json() == {"slept_s": 2.0}
    assert exit_code == 0
    assert elapsed < GRACE_S + 1
    assert service.lines[-1]["event"] == "service.stopped"


async def test_second_signal_exits_at_once_with_1(tmp_path: Path) -> None:
    env = base_env(tmp_path, {"LUMIKU_SHUTDOWN_GRACE_S": "20"})
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            service = await start(nursery, env)
            port = port_of(await service.wait_for("service.ready"))
            failures: list[BaseException] = []

            async def slow_request() -> None:
                try:
                    async with httpx.AsyncClient(timeout=30) as client:
                        await client.get(f"http://127.0.0.1:{port}/api/_test/slow?s=15")
                except httpx.HTTPError as exc:
                    failures.append(exc)

            nursery.start_soon(slow_request)
            await service.wait_for("test.slow_started")
            service.signal(signal.SIGTERM)
            await service.wait_for("service.draining")
            signalled_at = time.monotonic()
            service.signal(signal.SIGTERM)
            exit_code = await service.process.wait()
            elapsed = time.monotonic() - signalled_at
    assert exit_code == 1
    assert elapsed < 2  # not the 15 s request, not the 20 s grace
    assert failures  # the in-flight request was cut off


async def test_signal_during_startup_exits_cleanly(tmp_path: Path) -> None:
    # A "database" that accepts connections and never answers: start-up hangs connecting.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    env = base_env(
        tmp_path,
        {
            "LUMIKU_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/x",
            "LUMIKU_DATABASE_CONNECT_TIMEOUT_S": "60",
        },
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            service = await start(nursery, env)
            await service.wait_for("service.starting")
            signalled_at = time.monotonic()
            service.signal(signal.SIGTERM)
            assert await service.process.wait() == 0
    silent.close()
    assert time.monotonic() - signalled_at < 5  # not the 60 s connect timeout
    events = [line["event"] for line in service.lines]
    assert "service.startup_interrupted" in events
    assert "service.ready" not in events


def notify_socket(tmp_path: Path) -> socket.socket:
    """What systemd listens on: a datagram socket that also learns each sender's pid."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "notify.sock"))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    return sock


async def receive(sock: trio.socket.SocketType) -> tuple[str, int]:
    """One sd_notify datagram and the pid of the process that sent it."""
    data, ancillary, _, _ = await sock.recvmsg(4096, socket.CMSG_SPACE(struct.calcsize("3i")))
    pids = [
        struct.unpack("3i", cdata[: struct.calcsize("3i")])[0]
        for level, kind, cdata in ancillary
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
    ]
    return data.decode(), pids[0]


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


async def test_systemd_ready_after_port_accepts_and_stopping_at_shutdown(
    tmp_path: Path, serve_command: tuple[str, ...]
) -> None:
    """READY=1, WATCHDOG=1 pings and STOPPING=1 reach systemd from `python -m lumiku` and
    from the executable, whose Python runs in a child of the process systemd started: that
    child names itself in MAINPID= (so the units say NotifyAccess=all) and pings although
    WATCHDOG_PID names its parent."""
    sock = notify_socket(tmp_path)
    env = base_env(
        tmp_path, {"NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "400000"}
    )
    trio_sock = trio.socket.from_stdlib_socket(sock)
    messages: list[tuple[str, int]] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            service = await start(nursery, env, command=serve_command, pid_vars=["WATCHDOG_PID"])
            while not messages or not messages[-1][0].startswith("READY=1"):
                messages.append(await receive(trio_sock))
            ready, sender = messages[-1]
            fields = dict(line.split("=", 1) for line in ready.splitlines())
            assert int(fields["MAINPID"]) == sender
            if serve_command[0] == sys.executable:
                assert sender == service.process.pid
            else:  # PyInstaller's bootloader runs Python in a child process
                assert sender != service.process.pid
                assert parent_of(sender) == service.process.pid
            # READY=1 carries the address in STATUS=, and the port already accepts
            port = int(fields["STATUS"].rsplit(":", 1)[1])
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            # the watchdog pings (every 0.2 s) while the loop runs
            while sum(m == "WATCHDOG=1" for m, _ in messages) < 3:
                messages.append(await receive(trio_sock))
            service.signal(signal.SIGTERM)
            while not any(m.startswith("STOPPING=1") for m, _ in messages):
                messages.append(await receive(trio_sock))
            while not any(m.startswith("EXTEND_TIMEOUT_USEC=") for m, _ in messages):
                messages.append(await receive(trio_sock))
            assert await service.process.wait() == 0
    sock.close()
    # every message after READY=1 came from the process it named as MAINPID
    assert {pid for _, pid in messages} == {sender}


async def test_socket_activation_serves_on_the_passed_socket(
    tmp_path: Path, serve_command: tuple[str, ...]
) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    # systemd hands the socket over as fd 3 and names the process it started in LISTEN_PID
    # (the executable's bootloader passes it on to its Python child).
    env = base_env(tmp_path, {"LISTEN_FDS": "1", "LUMIKU_HTTP_BIND": "127.0.0.1:1"})
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            service = await start(nursery, env, command=serve_command, activate_fd=fd)
            ready = await service.wait_for("service.ready")
            assert ready["socket_activated"] is True
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/health/liveness")
            assert response.status_code == 200
            service.signal(signal.SIGTERM)
            assert await service.process.wait() == 0
    listener.close()


async def test_lumiku_serve_runs_the_builtin_apps_end_to_end(tmp_path: Path) -> None:
    """The real command, `python -m lumiku serve`, on the embedded default: both apps are
    listed, and an avatar generated through the HTTP API ends with a downloadable image."""
    env = base_env(tmp_path)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            service = await start(nursery, env, args=("-m", "lumiku", "serve"))
            port = port_of(await service.wait_for("service.ready"))
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                user = await register(client, "builtin@example.com")
                auth = {"authorization": f"Bearer {user['token']}"}
                apps = (await client.get("/api/apps", headers=auth)).json()["apps"]
                base = "/api/apps/avatar-creator"
                project = await client.post(f"{base}/projects", json={"name": "P"}, headers=auth)
                generated = await client.post(
                    f"{base}/projects/{project.json()['project']['id']}/avatars/generate",
                    json={"name": "Ana", "prompt": "a friendly portrait", "width": 512},
                    headers=auth,
                )
                generation_url = f"{base}/generations/{generated.json()['generation']['id']}"
                while (view := (await client.get(generation_url, headers=auth)).json())[
                    "generation"
                ]["status"] not in ("succeeded", "failed"):
                    await trio.sleep(0.1)
                image = await client.get(view["generation"]["avatar"]["image_url"])
            service.signal(signal.SIGTERM)
            assert await service.process.wait() == 0
    assert [app["id"] for app in apps] == ["avatar-creator", "pose-generator"]
    assert generated.status_code == 202
    assert view["generation"]["status"] == "succeeded"
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/png"
