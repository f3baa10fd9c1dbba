"""`GET /api/ws`: the websocket clients keep open for live events (SPEC §7).

For now it answers `{"type":"ping"}` with `{"type":"pong"}`, reports malformed or unknown
messages, sends `{"type":"ping"}` every `http.ws_ping_interval_s` (clients may answer
`{"type":"pong"}`), and closes with 1001 when the service shuts down (hypercorn does not
close idle websockets itself). Authentication and
events arrive with the accounts and jobs issues.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Final

import trio
from quart import Blueprint, websocket

from lumiku.accounts.service import User, authenticate
from lumiku.accounts.tokens import bearer
from lumiku.errors import Unauthorized
from lumiku.http.context import current_deps
from lumiku.observability.logging import user_id_var

if TYPE_CHECKING:
    from lumiku.deps import Deps

blueprint = Blueprint("ws", __name__)

GOING_AWAY: Final = 1001
UNAUTHENTICATED: Final = 4401


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


async def _first_message_token() -> str | None:
    """The token of a first `{"type":"auth","token":...}` message, else None."""
    message = await websocket.receive()
    try:
        data = json.loads(message) if isinstance(message, str) else None
    except (json.JSONDecodeError, RecursionError):
        return None
    if isinstance(data, dict) and data.get("type") == "auth" and isinstance(data.get("token"), str):
        token: str = data["token"]
        return token
    return None


async def _authenticate(deps: Deps) -> User | None:
    token = bearer(websocket.headers.get("Authorization")) or websocket.args.get("token")
    if not token:
        with trio.move_on_after(deps.settings.auth.ws_auth_timeout_s):
            token = await _first_message_token()
    if not token:
        return None
    try:
        return await authenticate(deps, token)
    except Unauthorized:
        return None


@blueprint.websocket("/api/ws")
async def events_socket() -> None:
    deps = current_deps()
    shutdown = deps.shutdown
    await websocket.accept()
    user = await _authenticate(deps)
    if user is None:
        await websocket.close(UNAUTHENTICATED, "authentication required")
        return
    user_id_var.set(str(user.id))
    await websocket.send(json.dumps({"type": "ready", "user_id": str(user.id)}))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_read_loop)
        nursery.start_soon(_ping_loop, deps.settings.http.ws_ping_interval_s)
        await shutdown.requested.wait()
        nursery.cancel_scope.cancel()
    await websocket.close(GOING_AWAY, "server shutting down")
