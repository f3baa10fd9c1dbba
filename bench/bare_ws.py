"""The baseline for bench/event_latency.py: a bare ASGI websocket app on hypercorn's trio
worker that sends each client the same progress messages Lumiku would, on the same schedule.

A client connects, then sends `{"events": K, "interval_s": X, "start_at": T}`; the app
waits until T plus a random part of X, sends K `generation:progress` messages X apart (each
built like Lumiku's event, `ts` set just before the send in the same millisecond format),
then one `generation:completed`.
No authentication, database, bus or subscription: what is left is hypercorn, wsproto and
JSON, i.e. the floor for delivering the same messages to the same clients.

Usage: bare_ws.py PORT
"""

from __future__ import annotations

import json
import random
import sys
import time
import uuid
from typing import Any

import trio
from bare_app import quiet_config
from hypercorn.trio import serve

from lumiku.events import utc_now


async def lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    job_id = str(uuid.uuid4())
    await send({"type": "websocket.send", "text": json.dumps({"type": "ready"})})
    message = await receive()
    if message["type"] != "websocket.receive":
        return
    plan = json.loads(message["text"])
    events, interval_s = int(plan["events"]), float(plan["interval_s"])
    start_at = float(plan["start_at"])
    await trio.sleep(max(0.0, start_at - time.time()) + random.uniform(0, interval_s))
    for done in range(1, events + 1):
        stage = f"{time.time():.6f}"
        event = {
            "type": "generation:progress",
            "job_id": job_id,
            "seq": done + 2,
            "ts": utc_now(),
            "data": {
                "percent": done * 100 // events,
                "stage": stage,
                "completed": done,
                "total": events,
            },
        }
        await send({"type": "websocket.send", "text": json.dumps(event)})
        if done < events:
            await trio.sleep(interval_s)
    done_event = {"type": "generation:completed", "job_id": job_id, "seq": events + 3}
    await send({"type": "websocket.send", "text": json.dumps(done_event)})
    while (await receive())["type"] != "websocket.disconnect":
        pass


def main() -> None:
    config = quiet_config(sys.argv[1])
    config.websocket_ping_interval = None
    trio.run(serve, app, config)


if __name__ == "__main__":
    main()
