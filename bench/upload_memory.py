"""Peak memory of a burst of image uploads, against smaller bursts in the same run.

Each scenario runs in a fresh `lumiku serve` process (embedded default, rate limits off):
one user uploads one small image first (Pillow and the JPEG codec loaded, pools warm),
then the server's peak RSS is reset (`/proc/PID/clear_refs`, 5) and the scenario's
uploads are sent at once to the Pose Generator's `POST …/uploads/upload`; the figure is
the server's peak RSS (VmHWM) minus its RSS just before the burst.

- `tiny × N`: N concurrent uploads of a 512×512 JPEG (the cost of N requests in flight);
- `large × 1`: one upload of a ~10 MiB JPEG (noise, so it stays ~10 MiB; 4096×~2900 px);
- `large × N`: N of them concurrently — what issue 13 measured at 285 MB with N = 20.

The ratio `large × N` / `large × 1` says how many single uploads' worth of memory a burst
takes: N when every upload is held whole, lower when the upload path bounds it.

Usage: .venv/bin/python bench/upload_memory.py [--uploads 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
ROUTE = "/api/apps/pose-generator/uploads/upload"
PASSWORD = "Tr0ub4dor&3-horse"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024


def noise_jpeg(width: int, height: int, quality: int) -> bytes:
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def large_jpeg() -> bytes:
    """A noise JPEG just under the 10 MiB upload limit (the widest allowed side)."""
    width, height, quality = 4096, 2048, 90
    data = noise_jpeg(width, height, quality)
    height = int(height * MAX_UPLOAD_BYTES * 0.97 / len(data))
    data = noise_jpeg(width, min(height, 4096), quality)
    assert len(data) <= MAX_UPLOAD_BYTES, len(data)
    return data


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


class Server:
    """`lumiku serve` with its JSON log in a file (read for `service.ready`)."""

    def __init__(self, var_dir: str) -> None:
        env = {
            "PATH": os.environ["PATH"],
            "LUMIKU_VAR_DIR": var_dir,
            "LUMIKU_HTTP_BIND": "127.0.0.1:0",
            "LUMIKU_LOG_FORMAT": "json",
            "LUMIKU_RATELIMIT_ENABLED": "false",
        }
        self.log_path = Path(var_dir) / "server.log"
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lumiku", "serve"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.base = ""

    async def wait_ready(self) -> None:
        with trio.fail_after(60):
            while self.process.poll() is None:
                for line in self.log_path.read_text().splitlines():
                    event = json.loads(line)
                    if event.get("event") == "service.ready":
                        address = event["addresses"][0]
                        self.base = address if "://" in address else f"http://{address}"
                        return
                await trio.sleep(0.05)
        raise RuntimeError(f"the server exited: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


async def upload(client: httpx.AsyncClient, token: str, data: bytes) -> None:
    response = await client.post(
        ROUTE,
        headers={"authorization": f"Bearer {token}"},
        files={"image": ("photo.jpg", data, "image/jpeg")},
    )
    if response.status_code != 201:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:300]}")


async def scenario(data: bytes, count: int) -> int:
    """Peak RSS growth (KiB) of the server while `count` uploads of `data` run at once."""
    with tempfile.TemporaryDirectory(prefix="lumiku-bench-") as var_dir:
        server = Server(var_dir)
        try:
            await server.wait_ready()
            pid = server.process.pid
            limits = httpx.Limits(max_connections=count + 1)
            async with httpx.AsyncClient(base_url=server.base, timeout=120, limits=limits) as c:
                response = await c.post(
                    "/api/auth/register", json={"email": "bench@example.com", "password": PASSWORD}
                )
                if response.status_code != 201:
                    raise RuntimeError(f"register answered {response.status_code}: {response.text}")
                token = response.json()["token"]
                await upload(c, token, SMALL)  # warm: Pillow, codecs, pools
                Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
                before = status_kib(pid, "VmRSS")
                async with trio.open_nursery() as nursery:
                    for _ in range(count):
                        nursery.start_soon(upload, c, token, data)
                peak = status_kib(pid, "VmHWM")
        finally:
            server.stop()
    return peak - before


SMALL = noise_jpeg(512, 512, 85)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    large = large_jpeg()
    n = args.uploads
    print(f"large image: {len(large)} bytes; small image: {len(SMALL)} bytes")
    results: dict[str, list[int]] = {f"tiny × {n}": [], "large × 1": [], f"large × {n}": []}
    for round_number in range(1, args.rounds + 1):
        started = time.monotonic()
        for name, data, count in (
            (f"tiny × {n}", SMALL, n),
            ("large × 1", large, 1),
            (f"large × {n}", large, n),
        ):
            results[name].append(await scenario(data, count))
        figures = ", ".join(
            f"{name} {values[-1] / 1024:.1f} MiB" for name, values in results.items()
        )
        print(f"round {round_number}: {figures} ({time.monotonic() - started:.0f} s)")
    medians = {name: statistics.median(values) for name, values in results.items()}
    print("\npeak RSS growth over the RSS before the burst (median of rounds):")
    for name, value in medians.items():
        values = results[name]
        print(
            f"  {name:<12} {value / 1024:7.1f} MiB"
            f"   (range {min(values) / 1024:.1f} – {max(values) / 1024:.1f})"
        )
    single = max(medians["large × 1"], 1)
    print(
        f"ratio large × {n} / large × 1: {medians[f'large × {n}'] / single:.2f}; "
        f"large × {n} / tiny × {n}: {medians[f'large × {n}'] / max(medians[f'tiny × {n}'], 1):.2f}"
    )


if __name__ == "__main__":
    trio.run(main)
