"""Fakes and helpers shipped for tests (no unittest.mock for our own code)."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, NoReturn

import attrs
import trio
from quart import Blueprint, request

from lumiku.errors import Unavailable
from lumiku.http.auth import authenticated, current_user
from lumiku.http.bodies import read_json
from lumiku.http.context import current_deps
from lumiku.http.idempotency import accepted, read_idempotency
from lumiku.http.uploads import read_image_upload
from lumiku.observability.logging import get_logger
from lumiku.storage.images import store_with_thumbnail
from lumiku.storage.signing import signed_url

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = get_logger(__name__)


def routes_for_tests() -> Blueprint:
    """Routes the e2e tests and benchmarks mount next to the real ones (never in production).

    `GET /api/_test/slow?s=N` answers after N seconds; `POST /api/_test/echo` parses and
    logs its JSON body; `GET /api/_test/boom?message=M` raises an unexpected exception;
    `POST /api/_test/jobs {app, kind, payload, cost}` queues a job for the caller
    (with `Idempotency-Key`, as every generation route); `POST /api/_test/upload` (multipart
    `image` + text fields) validates and stores an image and its thumbnail under
    `test/<user_id>/`, as an app's upload route would (reading an `Idempotency-Key` first),
    and answers 201 with their keys and signed URLs.
    """
    blueprint = Blueprint("tests", __name__, url_prefix="/api/_test")

    @blueprint.get("/slow")
    async def slow() -> dict[str, Any]:
        seconds = float(request.args.get("s", "1"))
        log.info("test.slow_started", seconds=seconds)
        await trio.sleep(seconds)
        return {"slept_s": seconds}

    @blueprint.post("/echo")
    async def echo() -> dict[str, Any]:
        body = await read_json()
        log.info("test.echo", body=body)
        return {"received": body}

    @blueprint.post("/jobs")
    @authenticated
    async def submit_test_job() -> tuple[dict[str, Any], int, dict[str, str]]:
        """Queue a job of a test app's kind for the caller, as an app's route would: 202
        `{job, charged}`, honouring `Idempotency-Key` (a replay answers the same, naming
        the same job and what the first request charged, with `Idempotent-Replayed: true`)."""
        from lumiku.jobs.service import submit_job

        key = await read_idempotency()
        body = await read_json()
        submission = await submit_job(
            current_deps(),
            current_user(),
            app=str(body["app"]),
            kind=str(body["kind"]),
            payload=dict(body.get("payload", {})),
            cost=int(body.get("cost", 0)),
            idempotency_key=key.key,
            request_hash=key.request_hash,
        )
        job = submission.job
        charged = job.cost if submission.replayed else submission.charged
        return accepted({"job": job.as_dict(), "charged": charged}, submission)

    @blueprint.post("/upload")
    @authenticated
    async def upload() -> tuple[dict[str, Any], int]:
        deps = current_deps()
        await read_idempotency()  # with a key, it parses the form first, as upload routes will
        form = await read_image_upload(deps.settings)
        stored = await store_with_thumbnail(
            deps.storage, form.image, app="test", user_id=current_user().id
        )
        return {
            "key": stored.key,
            "url": signed_url(deps, stored.key),
            "thumbnail_key": stored.thumbnail_key,
            "thumbnail_url": signed_url(deps, stored.thumbnail_key),
            "content_type": stored.content_type,
            "width": stored.width,
            "height": stored.height,
            "size_bytes": stored.size_bytes,
            "fields": dict(form.fields),
        }, 201

    @blueprint.get("/boom")
    async def boom() -> dict[str, Any]:
        raise RuntimeError(f"unexpected failure: {request.args.get('message', '')}")

    return blueprint


@attrs.define
class TcpProxy:
    """A TCP forwarder to `target` that a test can cut in two ways and restore.

    - `take_down()` (reset mode): closes every forwarded connection and the listener, so
      connecting is refused, as when the dependency's process is gone.
    - `drop()` (drop mode): keeps every connection open and keeps accepting new ones, but
      forwards no byte in either direction, as a dead host or a network partition does:
      the client sees silence, never a reset. New connections are accepted without
      reaching the target until the restore.
    - `bring_up()` restores from either mode. After a drop, forwarding resumes on the
      connections that are still open, with the bytes held during the drop, as TCP does
      when a partition heals and both ends still hold the connection; a client that gave
      up has closed its end, and the proxy then closes the other end too. New connections
      reach the target again.
    """

    target_host: str
    target_port: int
    port: int = 0
    _listener_scope: trio.CancelScope | None = None
    _conn_scopes: set[trio.CancelScope] = attrs.field(factory=set)
    _up: trio.Event = attrs.field(factory=trio.Event)
    _down: bool = False
    _flowing: trio.Event = attrs.field(factory=trio.Event)

    def __attrs_post_init__(self) -> None:
        self._flowing.set()

    @property
    def dropping(self) -> bool:
        """True while `drop()` holds every byte."""
        return not self._flowing.is_set()

    async def serve(
        self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> NoReturn:
        """Forward connections until cancelled; `task_status` gets the bound port."""
        started = False
        while True:
            with trio.CancelScope() as scope:
                self._listener_scope = scope
                listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
                self.port = listeners[0].socket.getsockname()[1]
                if not started:
                    started = True
                    task_status.started(self.port)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(trio.serve_tcp, self._handle, self.port)
                    for listener in listeners:
                        await listener.aclose()
                    await trio.sleep_forever()
            while self._down:
                self._up = trio.Event()
                await self._up.wait()

    def take_down(self) -> None:
        """Reset mode: close the listener and every forwarded connection."""
        self._down = True
        if self._listener_scope is not None:
            self._listener_scope.cancel()
        for scope in list(self._conn_scopes):
            scope.cancel()

    def drop(self) -> None:
        """Drop mode: from now on forward nothing, close nothing (see the class docstring)."""
        if self._flowing.is_set():
            self._flowing = trio.Event()

    def bring_up(self) -> None:
        """Restore from `take_down()` or `drop()`."""
        self._down = False
        self._flowing.set()
        self._up.set()

    async def _wait_flowing(self) -> None:
        # The event is replaced by each drop(); waiting on the current one is enough, as
        # bring_up() sets whichever is current.
        while not self._flowing.is_set():
            await self._flowing.wait()

    async def _handle(self, client: trio.SocketStream) -> None:
        with trio.CancelScope() as scope:
            self._conn_scopes.add(scope)
            try:
                async with client:
                    await self._wait_flowing()
                    try:
                        upstream = await trio.open_tcp_stream(self.target_host, self.target_port)
                    except OSError:
                        return
                    async with upstream, trio.open_nursery() as nursery:
                        nursery.start_soon(self._pump, client, upstream, nursery.cancel_scope)
                        nursery.start_soon(self._pump, upstream, client, nursery.cancel_scope)
            finally:
                self._conn_scopes.discard(scope)

    async def _pump(
        self, source: trio.SocketStream, sink: trio.SocketStream, scope: trio.CancelScope
    ) -> None:
        try:
            while True:
                await self._wait_flowing()
                try:
                    chunk = await source.receive_some()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    chunk = b""
                # What was read just before a drop (data, or the end of the stream) is held
                # too: nothing crosses while dropped.
                await self._wait_flowing()
                if not chunk:
                    break
                await sink.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()


@attrs.define
class FlakyStore:
    """The real store behind a database outage a test switches on and off (a fake for the
    `Store` protocol: wrap `deps.store`, e.g. with `attrs.evolve(deps, store=FlakyStore(...))`).

    While `down`, and for the next `failures` calls, every call raises `Unavailable` without
    reaching the database. With `lose_answers`, a call reaches the database and commits, and
    then raises all the same: the connection died before its answer arrived. Between
    `stall()` and `resume()` every call waits, as on a silent network without client
    timeouts, and goes on once resumed (unless cancelled meanwhile). `failed` counts the
    calls that raised.
    """

    store: Any
    failures: int = 0
    down: bool = False
    lose_answers: bool = False
    failed: int = 0
    _resumed: trio.Event | None = None

    def stall(self) -> None:
        if self._resumed is None:
            self._resumed = trio.Event()

    def resume(self) -> None:
        if self._resumed is not None:
            self._resumed.set()
            self._resumed = None

    async def _outage(self) -> None:
        if self._resumed is not None:
            await self._resumed.wait()
        if self.down or self.failures > 0:
            self.failures = max(self.failures - 1, 0)
            self.failed += 1
            raise Unavailable("PostgreSQL: Connect call failed (a test's outage)")

    def _lost(self) -> None:
        if self.lose_answers:
            self.failed += 1
            raise Unavailable("PostgreSQL: connection lost after the statement was sent")

    async def _call(self, method: str, *args: Any) -> Any:
        await self._outage()
        result = await getattr(self.store, method)(*args)
        self._lost()
        return result

    async def fetch_one(self, query: Any, *args: Any) -> Any:
        return await self._call("fetch_one", query, *args)

    async def fetch_all(self, query: Any, *args: Any) -> Any:
        return await self._call("fetch_all", query, *args)

    async def fetch_val(self, query: Any, *args: Any) -> Any:
        return await self._call("fetch_val", query, *args)

    async def execute(self, query: Any, *args: Any) -> Any:
        return await self._call("execute", query, *args)

    async def execute_many(self, query: Any, rows: Any) -> None:
        await self._call("execute_many", query, rows)

    async def unit(self, work: Any, *args: Any) -> Any:
        return await self._call("unit", work, *args)

    async def ping(self) -> None:
        await self._call("ping")

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        await self._outage()
        async with self.store.transaction() as tx:
            yield tx
        self._lost()

    @contextlib.asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[Any]:
        await self._outage()
        async with self.store.listen(channel) as listener:
            yield listener

    def __getattr__(self, name: str) -> Any:  # backend, description, schema_status, ...
        return getattr(self.store, name)
