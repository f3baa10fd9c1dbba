"""`GET /api/ws`: the websocket clients keep open for live events (SPEC §7).

For now it answers `{"type":"ping"}` with `{"type":"pong"}`, reports malformed or unknown
messages, sends `{"type":"ping"}` every `http.ws_ping_interval_s` (clients may answer
`{"type":"pong"}`), and closes with 1001 when the service shuts down (hypercorn does not
close idle websockets itself). Authentication and
events arrive with the accounts and jobs issues.
"""

from __future__ import annotations

import json
from typing import Any, Final

import trio
from quart import Blueprint, websocket

blueprint = Blueprint("ws", __name__)

GOING_AWAY: Final = 1001


def _error(code: str, detail: str) -> str:
    return json.dumps({"type": "error", "code": code, "detail": detail})


def _reply(message: Any) -> str | None:
    """The answer to one client message (None for messages that need none)."""
    if isinstance(message, bytes):
        return _error("UNSUPPORTED_FRAME", "Send JSON text frames.")
    try:
        data = json.loads(message)
    except (json.JSONDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
        return _error("INVALID_JSON", "The message is not valid JSON.")
    kind = data.get("type") if isinstance(data, dict) else None
    if kind == "ping":
        return '{"type":"pong"}'
    if kind == "pong":
        return None
    return _error("UNKNOWN_MESSAGE_TYPE", "Unknown message type; expected ping.")


async def _ping_loop(interval_s: float) -> None:
    while True:
        await trio.sleep(interval_s)
        await websocket.send('{"type":"ping"}')


async def _read_loop() -> None:
    while True:
        answer = _reply(await websocket.receive())
        if answer is not None:
            await websocket.send(answer)


@blueprint.websocket("/api/ws")
async def events_socket() -> None:
    from lumiku.http.app import current_deps

    deps = current_deps()
    shutdown = deps.shutdown
    await websocket.accept()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_read_loop)
        nursery.start_soon(_ping_loop, deps.settings.http.ws_ping_interval_s)
        await shutdown.requested.wait()
        nursery.cancel_scope.cancel()
    await websocket.close(GOING_AWAY, "server shutting down")
