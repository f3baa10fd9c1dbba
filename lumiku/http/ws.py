"""`GET /api/ws`: the websocket clients keep open for live events (SPEC §7).

It answers `{"type":"ping"}` with `{"type":"pong"}`, reports malformed or unknown messages,
sends `{"type":"ping"}` every `http.ws_ping_interval_s` (clients may answer
`{"type":"pong"}`), and closes with 1001 as soon as the service's listeners close on shutdown
(`ShutdownState.closing`), whether the socket has authenticated yet or not (hypercorn does not
close idle websockets itself).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio
from quart import Blueprint, websocket

from lumiku import events
from lumiku.accounts.service import User, authenticate
from lumiku.accounts.tokens import bearer
from lumiku.convert import decode_json
from lumiku.errors import InvalidJson, NotFound, Unauthorized, ValidationFailed
from lumiku.http.auth import is_admin
from lumiku.http.context import current_deps
from lumiku.jobs import announce
from lumiku.jobs.queue import get_job
from lumiku.observability.logging import user_id_var

if TYPE_CHECKING:
    from lumiku.deps import Deps

blueprint = Blueprint("ws", __name__)

GOING_AWAY: Final = 1001
TRY_AGAIN_LATER: Final = 1013
UNAUTHENTICATED: Final = 4401


def _error(code: str, detail: str) -> str:
    return json.dumps({"type": "error", "code": code, "detail": detail})


@attrs.define
class Socket:
    """One authenticated client: its subscription, and one lock so replies, replays and live
    events never interleave on the wire."""

    deps: Deps
    user: User
    subscription: events.Subscription
    lock: trio.Lock = attrs.field(factory=trio.Lock)

    async def send(self, text: str) -> None:
        async with self.lock:
            await websocket.send(text)

    async def subscribe(self, data: dict[str, Any]) -> None:
        """`{"type":"subscribe","job_id","after_seq"}`: the job's snapshot, then the events
        after `after_seq` from the replay window (and a finished job's terminal event from
        its row when the replay lacks it: `announce.catch_up`), then (through `forward`)
        live ones."""
        after_seq = data.get("after_seq", 0)
        if not isinstance(after_seq, int) or isinstance(after_seq, bool) or after_seq < 0:
            await self.send(_error("VALIDATION_ERROR", "after_seq must be a non-negative integer."))
            return
        try:
            job_id = uuid.UUID(str(data.get("job_id")))
            job = await get_job(
                self.deps.store, job_id, user_id=self.user.id, is_admin=is_admin(self.user)
            )
        except (ValueError, NotFound):
            await self.send(_error("NOT_FOUND", "No such job."))
            return
        async with self.lock:  # no live event of this job may slip in before the replay
            await websocket.send(json.dumps(announce.snapshot(job).to_json()))
            self.subscription.resume_from(str(job.id), after_seq)
            # the row was read after the subscription began: the rest arrives live
            for event in await announce.catch_up(self.deps.events, self.subscription, job):
                await websocket.send(json.dumps(event.to_json()))

    async def forward(self) -> None:
        """Live events of the user's jobs; a client that fell behind is closed with 1013."""
        try:
            while True:
                event = await self.subscription.receive_candidate()
                async with self.lock:  # a replay sent meanwhile may have had it already
                    if self.subscription.accept(event):
                        await websocket.send(json.dumps(event.to_json()))
        except events.Overflowed:
            async with self.lock:
                await websocket.close(
                    TRY_AGAIN_LATER, "too slow: reconnect and resume with after_seq"
                )
            raise

    async def read(self) -> None:
        while True:
            message = await websocket.receive()
            data = _parse(message)
            if isinstance(data, str):
                await self.send(data)
            elif data.get("type") == "ping":
                await self.send('{"type":"pong"}')
            elif data.get("type") == "subscribe":
                await self.subscribe(data)
            elif data.get("type") != "pong":
                await self.send(_error("UNKNOWN_MESSAGE_TYPE", "Expected ping or subscribe."))


def _parse(message: Any) -> dict[str, Any] | str:
    """The message as a JSON object, or the error frame to answer with."""
    if isinstance(message, bytes):
        return _error("UNSUPPORTED_FRAME", "Send JSON text frames.")
    try:
        data = decode_json(message)  # strict, as request bodies (lumiku.convert)
    except InvalidJson:
        return _error("INVALID_JSON", "The message is not valid JSON.")
    except ValidationFailed as exc:
        return _error("VALIDATION_ERROR", "; ".join(f"{e.field} {e.message}" for e in exc.errors))
    if not isinstance(data, dict):
        return _error("UNKNOWN_MESSAGE_TYPE", "Expected a JSON object with a type.")
    return data


async def _ping_loop(socket: Socket, interval_s: float) -> None:
    while True:
        await trio.sleep(interval_s)
        await socket.send('{"type":"ping"}')


async def _first_message_token() -> str | None:
    """The token of a first `{"type":"auth","token":...}` message, else None."""
    message = await websocket.receive()
    try:
        data = decode_json(message) if isinstance(message, str) else None
    except (InvalidJson, ValidationFailed):
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


async def _authenticate_unless_shutdown(deps: Deps) -> User | None:
    """`_authenticate`, given up at once when the service shuts down (then None): a client
    that has not authenticated yet must not hold a drain for `auth.ws_auth_timeout_s`."""
    user: User | None = None
    async with trio.open_nursery() as nursery:

        async def authenticate_then_stop() -> None:
            nonlocal user
            user = await _authenticate(deps)
            nursery.cancel_scope.cancel()

        nursery.start_soon(authenticate_then_stop)
        await deps.shutdown.closing.wait()
        nursery.cancel_scope.cancel()
    return user


@blueprint.websocket("/api/ws")
async def events_socket() -> None:
    deps = current_deps()
    shutdown = deps.shutdown
    await websocket.accept()
    user = await _authenticate_unless_shutdown(deps)
    if shutdown.closing.is_set():
        await websocket.close(GOING_AWAY, "server shutting down")
        return
    if user is None:
        await websocket.close(UNAUTHENTICATED, "authentication required")
        return
    user_id_var.set(str(user.id))
    async with deps.events.subscribe_user(str(user.id)) as subscription:
        socket = Socket(deps, user, subscription)
        await socket.send(json.dumps({"type": "ready", "user_id": str(user.id)}))
        overflowed = False
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(socket.read)
                nursery.start_soon(socket.forward)
                nursery.start_soon(_ping_loop, socket, deps.settings.http.ws_ping_interval_s)
                await shutdown.closing.wait()
                nursery.cancel_scope.cancel()
        except* events.Overflowed:
            overflowed = True  # closed with 1013 already
        if not overflowed:
            await websocket.close(GOING_AWAY, "server shutting down")
