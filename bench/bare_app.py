"""The baseline for bench/http_overhead.py: a bare ASGI app on hypercorn's trio worker that
answers every request with the same JSON as /health/liveness. Usage: bare_app.py PORT"""

from __future__ import annotations

import sys
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

BODY = b'{"status":"alive"}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def quiet_config(port: str) -> Config:
    """hypercorn on 127.0.0.1:`port` with no access or error log and no Server header."""
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.include_server_header = False
    return config


def main() -> None:
    trio.run(serve, app, quiet_config(sys.argv[1]))


if __name__ == "__main__":
    main()
