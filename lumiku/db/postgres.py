"""PostgreSQL backend: an asyncpg pool bridged with trio-asyncio (the ONLY asyncpg importer).

Every crossing of the bridge costs ~80 µs, so each call is one asyncio coroutine run through
`trio_asyncio.aio_as_trio`: a statement outside a transaction borrows, runs and returns a
connection in one crossing; in a transaction the first crossing also borrows the connection
and begins, each further statement is one crossing, and commit-and-return is the last.
Errors are translated once, in `map_error`.

Every crossing is bounded on the client side by `database.command_timeout_s` (borrowing,
connecting, statements, commit), because `statement_timeout` is enforced by the server and
does nothing when the server cannot be reached: past the bound the call raises
`Unavailable`. A cancelled or timed-out round trip leaves its connection mid-protocol, and
asyncpg would wait for the server (a cancel request, a ROLLBACK) before reusing it, which a
silent network never answers and which trio-asyncio waits for: such a connection is
terminated at once instead (the server rolls its transaction back) and the pool connects
afresh, so a pool full of dead connections heals by itself. Clean-up that must talk to the
server is bounded on the asyncio side too.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar
from urllib.parse import unquote, urlsplit

import asyncpg
import trio
import trio_asyncio

from lumiku.db import migrate
from lumiku.db.queries import load_queries
from lumiku.db.store import BaseExecutor, PoolStatistics
from lumiku.errors import (
    CheckViolation,
    DatabaseError,
    IntegrityViolation,
    Unavailable,
    UniqueViolation,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from lumiku.config import DatabaseSettings
    from lumiku.db.migrate import MigrationSource, SchemaStatus
    from lumiku.db.queries import Query
    from lumiku.db.store import Mode

# Bounds on shielded clean-up: returning a connection, closing the pool.
CLEANUP_TIMEOUT_S: Final = 5.0
# A ROLLBACK on a healthy connection takes a round trip; past this the connection is
# terminated instead, which rolls back as well.
ROLLBACK_TIMEOUT_S: Final = 1.0
# SQLSTATE classes meaning "cannot reach or talk to the database": connection exception,
# insufficient resources, operator intervention (shutdown, database dropped), bad
# credentials, unknown database.
_UNAVAILABLE_SQLSTATES: Final = ("08", "53", "57P", "28", "3D000")
_Q: Final = load_queries("lumiku.db")
# Notifications waiting for their listener; beyond this they are dropped (counted), which
# costs only latency: workers poll, and heartbeats see cancellations.
LISTEN_BUFFER: Final = 1024
_NOTIFY_SQL: Final = "SELECT pg_notify($1, $2)"
# The store's modes, plus a parameterless multi-statement script (migrations).
_Mode = Literal["one", "all", "val", "count", "many", "script"]
_T = TypeVar("_T")


def _uuid_bytes(value: Any) -> bytes:
    return (value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))).bytes


async def _init_connection(conn: Any) -> None:
    """Codecs so values come back as the same types as from SQLite."""
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec(
        "uuid",
        encoder=_uuid_bytes,
        decoder=lambda raw: uuid.UUID(bytes=raw),
        schema="pg_catalog",
        format="binary",
    )


def _count(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


async def _run(conn: Any, mode: _Mode, sql: str, args: Sequence[Any]) -> Any:
    if mode == "many":
        await conn.executemany(sql, args)
        return None
    if mode == "one":
        record = await conn.fetchrow(sql, *args)
        return None if record is None else dict(record.items())
    if mode == "all":
        return [dict(record.items()) for record in await conn.fetch(sql, *args)]
    if mode == "val":
        return await conn.fetchval(sql, *args)
    return _count(await conn.execute(sql, *args))


def _terminate(conn: Any) -> None:
    """Close a pooled connection at once (no round trip). A connection the pool already
    took back after losing it is detached from its proxy: nothing left to do then."""
    with suppress(asyncpg.InterfaceError):
        conn.terminate()


def _is_closed(conn: Any) -> bool:
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:  # detached: the pool took it back after it was lost
        return True


def _leaves_connection_broken(exc: BaseException) -> bool:
    """Whether `exc`, raised during a round trip, may leave the connection unusable: a
    cancellation or timeout mid-protocol, a network or driver error, or the server saying it
    is going away. A plain SQL error (a constraint, a statement_timeout) leaves it usable,
    as does an error of the caller's own code in a unit of work."""
    if isinstance(exc, asyncio.CancelledError | Unavailable):
        return True
    if isinstance(exc, asyncpg.PostgresError):
        return isinstance(map_error(exc), Unavailable)
    return isinstance(exc, _TRANSLATED)


async def _rollback(conn: Any, transaction: Any) -> None:
    """Roll `transaction` back on a healthy connection, or terminate the connection when
    that fails or takes too long (the server then rolls back); raises only a cancellation."""
    try:
        await asyncio.wait_for(transaction.rollback(), ROLLBACK_TIMEOUT_S)
    except Exception:
        _terminate(conn)  # the error that led here matters more than this one
    except BaseException:
        _terminate(conn)
        raise


async def _run_pooled(pool: Any, mode: _Mode, sql: str, args: Sequence[Any]) -> Any:
    conn = await pool.acquire()
    try:
        return await _run(conn, mode, sql, args)
    except BaseException as exc:
        if _leaves_connection_broken(exc):
            _terminate(conn)
        raise
    finally:
        await pool.release(conn, timeout=CLEANUP_TIMEOUT_S)


class _TxState:
    """The asyncio side of a transaction: its connection and asyncpg transaction."""

    conn: Any = None
    transaction: Any = None


async def _run_in_tx(state: _TxState, pool: Any, mode: _Mode, sql: str, args: Sequence[Any]) -> Any:
    if state.conn is None:
        state.conn = await pool.acquire()
    try:
        if state.transaction is None:
            transaction = state.conn.transaction()
            await transaction.start()
            state.transaction = transaction
        return await _run(state.conn, mode, sql, args)
    except BaseException as exc:
        if _leaves_connection_broken(exc):
            _terminate(state.conn)
        raise


async def _finish_tx(state: _TxState, pool: Any, commit: bool) -> None:
    conn, transaction = state.conn, state.transaction
    state.conn = state.transaction = None
    if conn is None:
        return
    try:
        if transaction is not None and commit:
            await transaction.commit()
        elif transaction is not None and not _is_closed(conn):
            await _rollback(conn, transaction)
    except BaseException as exc:
        # A failed COMMIT (a deferred constraint) leaves a usable connection; anything
        # else may not.
        if not (commit and isinstance(exc, asyncpg.PostgresError)) or _leaves_connection_broken(
            exc
        ):
            _terminate(conn)
        raise
    finally:
        await pool.release(conn, timeout=CLEANUP_TIMEOUT_S)


async def _keep_session(conn: Any) -> None:
    """Pool reset on release. asyncpg already rolls back an open transaction; its default
    reset query (RESET ALL, UNLISTEN *, unlock advisory locks, CLOSE ALL) costs a round
    trip per statement, and the Store never changes session state (advisory locks are
    transaction-scoped), so nothing else needs undoing."""


async def _create_pool(settings: DatabaseSettings) -> Any:
    return await asyncpg.create_pool(
        settings.url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        timeout=settings.connect_timeout_s,
        server_settings={
            "application_name": "lumiku",
            "statement_timeout": str(int(settings.statement_timeout_s * 1000)),
        },
        init=_init_connection,
        reset=_keep_session,
    )


async def _close_pool(pool: Any) -> None:
    try:
        await asyncio.wait_for(pool.close(), CLEANUP_TIMEOUT_S)
    except TimeoutError:
        pool.terminate()
    except asyncio.CancelledError:
        pool.terminate()
        raise


def map_error(exc: BaseException, secrets: Sequence[str] = ()) -> DatabaseError:
    """The `DatabaseError` for an asyncpg or network error; `secrets` are scrubbed from the
    message."""
    message = str(exc) or type(exc).__name__
    for secret in secrets:
        message = message.replace(secret, "***")
    message = f"PostgreSQL: {message}"
    sqlstate = str(getattr(exc, "sqlstate", "") or "")
    if isinstance(exc, asyncpg.UniqueViolationError):
        return UniqueViolation(message, exc.constraint_name)
    if isinstance(exc, asyncpg.CheckViolationError):
        return CheckViolation(message, exc.constraint_name)
    if isinstance(exc, asyncpg.NotNullViolationError):
        return CheckViolation(message, f"{exc.table_name}_{exc.column_name}_not_null")
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return IntegrityViolation(message, getattr(exc, "constraint_name", None))
    if (
        isinstance(exc, OSError | TimeoutError)
        or sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
        or (
            isinstance(exc, asyncpg.InterfaceError)
            and ("closed" in message or "closing" in message)
        )
    ):
        return Unavailable(message)
    return DatabaseError(message)


_TRANSLATED: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
)


def _check_args(args: Sequence[Any]) -> None:
    for arg in args:
        if isinstance(arg, tuple):  # a row of execute_many
            _check_args(arg)
        elif isinstance(arg, datetime) and arg.utcoffset() is None:
            raise DatabaseError(f"naive datetime {arg!r}: pass a timezone-aware (UTC) datetime")


class _AsyncioTx(BaseExecutor):
    """The `Tx` a unit of work gets: statements on its connection, on the asyncio side of
    the bridge (no crossing), errors mapped as everywhere else."""

    def __init__(self, conn: Any, secrets: Sequence[str]) -> None:
        self._conn = conn
        self._secrets = secrets

    async def _run(self, query: Query, args: tuple[Any, ...], mode: Mode) -> Any:
        _check_args(args)
        try:
            return await _run(self._conn, mode, query.postgres, args)
        except _TRANSLATED as exc:
            raise map_error(exc, self._secrets) from exc

    async def execute_script(self, sql: str) -> None:
        raise DatabaseError("scripts run in store.transaction(), not in a unit of work")

    async def notify(self, channel: str, payload: str) -> None:
        try:
            await self._conn.execute(_NOTIFY_SQL, channel, payload)
        except _TRANSLATED as exc:
            raise map_error(exc, self._secrets) from exc


async def _run_unit(
    pool: Any, secrets: Sequence[str], work: Callable[..., Awaitable[Any]], args: Sequence[Any]
) -> Any:
    # Not `async with conn.transaction()`: its ROLLBACK on a cancellation would wait for a
    # server that may not answer (see the module docstring).
    conn = await pool.acquire()
    transaction = None
    try:
        transaction = conn.transaction()
        await transaction.start()
        result = await work(_AsyncioTx(conn, secrets), *args)
        await transaction.commit()
        return result
    except BaseException as exc:
        if _leaves_connection_broken(exc):
            _terminate(conn)
        elif transaction is not None and not _is_closed(conn) and conn.is_in_transaction():
            await _rollback(conn, transaction)
        raise
    finally:
        await pool.release(conn, timeout=CLEANUP_TIMEOUT_S)


def _is_migration(mode: _Mode, sql: str) -> bool:
    """A migration's script, or the lock migrators wait on while another one migrates:
    start-up work bounded by the server's statement_timeout, not the command bound."""
    return mode == "script" or sql == _Q.lock_migrations.postgres


class PostgresTx(BaseExecutor):
    """A transaction holding one pooled connection from its first statement to its end."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._state = _TxState()
        self._failed = False
        self._closed = False

    async def _statement(self, mode: _Mode, sql: str, args: Sequence[Any]) -> Any:
        if self._closed:
            raise DatabaseError("the transaction is already finished")
        if self._failed:
            raise DatabaseError("the transaction is aborted after an error; it will roll back")
        try:
            _check_args(args)
            return await self._store.call(
                _run_in_tx,
                self._state,
                self._store.pool,
                mode,
                sql,
                args,
                timeout_s=self._store.script_timeout_s if _is_migration(mode, sql) else None,
            )
        except BaseException:
            self._failed = True
            raise

    async def _run(self, query: Query, args: tuple[Any, ...], mode: Mode) -> Any:
        return await self._statement(mode, query.postgres, args)

    async def execute_script(self, sql: str) -> None:
        await self._statement("script", sql, ())

    async def notify(self, channel: str, payload: str) -> None:
        """NOTIFY `channel` with `payload`, delivered to every listener when (and only if)
        this transaction commits."""
        await self._statement("val", _NOTIFY_SQL, (channel, payload))

    async def finish(self, *, commit: bool) -> None:
        """Commit (or roll back) and return the connection to the pool; a no-op once the
        connection went back."""
        self._closed = True
        failed = self._failed
        if self._state.conn is not None:
            await self._store.call(_finish_tx, self._state, self._store.pool, commit and not failed)
        if commit and failed:
            raise DatabaseError("the transaction was aborted by an error and rolled back")


async def _connect_listener(
    settings: DatabaseSettings,
    channel: str,
    on_notify: Callable[..., None],
    on_lost: Callable[..., None],
) -> Any:
    conn = await asyncpg.connect(
        settings.url,
        timeout=settings.connect_timeout_s,
        server_settings={"application_name": "lumiku-listen"},
    )
    try:
        await conn.add_listener(channel, on_notify)
        conn.add_termination_listener(on_lost)
    except BaseException:
        conn.terminate()
        raise
    return conn


async def _close_listener(conn: Any) -> None:
    try:
        await asyncio.wait_for(conn.close(), CLEANUP_TIMEOUT_S)
    except (TimeoutError, asyncpg.InterfaceError, OSError):
        conn.terminate()
    except asyncio.CancelledError:
        conn.terminate()
        raise


async def _ping_listener(conn: Any) -> None:
    await conn.fetchval("SELECT 1")


class PostgresListener:
    """One dedicated connection LISTENing on a channel (not from the pool: a pooled
    connection is reset and shared). Built by `PostgresStore.listen`."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._send, self._receive = trio.open_memory_channel[str](LISTEN_BUFFER)
        self.conn: Any = None
        self.dropped = 0

    def on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        # asyncpg calls this on the asyncio side of the bridge, in trio's thread.
        try:
            self._send.send_nowait(payload)
        except trio.WouldBlock:
            self.dropped += 1
        except trio.ClosedResourceError:
            pass

    def on_lost(self, _conn: Any) -> None:
        self._send.close()

    async def receive(self) -> str:
        """The next payload; raises `Unavailable` once the connection is lost."""
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise Unavailable("PostgreSQL: the LISTEN connection was lost") from None

    async def ping(self) -> None:
        """A round trip on the listening connection (finds a silently dead one)."""
        await self._store.call(_ping_listener, self.conn)


class PostgresStore(BaseExecutor):
    """See `store.Store`. Built by `open_postgres_store`."""

    backend: Final = "postgres"

    def __init__(
        self,
        pool: Any,
        loop: Any,
        *,
        settings: DatabaseSettings,
        description: str,
        secrets: Sequence[str],
        migrations: tuple[migrate.Migration, ...],
    ) -> None:
        self.pool = pool
        self.description = description
        self._settings = settings
        self._loop = loop
        self._secrets = tuple(secrets)
        self._migrations = migrations

    @property
    def script_timeout_s(self) -> float:
        """The bound on a script (a migration): the server's statement_timeout, then some."""
        return self._settings.statement_timeout_s + self._settings.command_timeout_s

    def pool_statistics(self) -> PoolStatistics:
        """The asyncpg pool's counts (plain attribute reads: no bridge crossing)."""
        size = self.pool.get_size()
        return PoolStatistics(size, size - self.pool.get_idle_size(), self.pool.get_max_size())

    async def call(
        self, fn: Callable[..., Awaitable[Any]], *args: Any, timeout_s: float | None = None
    ) -> Any:
        """Run the asyncio coroutine function `fn(*args)` as one crossing of the bridge,
        within `timeout_s` (default `database.command_timeout_s`); raises `Unavailable` past
        it (see the module docstring)."""
        bound = self._settings.command_timeout_s if timeout_s is None else timeout_s
        try:
            with trio.fail_after(bound):
                return await trio_asyncio.aio_as_trio(fn, loop=self._loop)(*args)
        except trio.TooSlowError as exc:
            raise Unavailable(f"PostgreSQL: no answer within {bound:g} s") from exc
        except _TRANSLATED as exc:
            raise map_error(exc, self._secrets) from exc

    async def _pooled(self, mode: _Mode, sql: str, args: Sequence[Any]) -> Any:
        _check_args(args)
        return await self.call(_run_pooled, self.pool, mode, sql, args)

    async def _run(self, query: Query, args: tuple[Any, ...], mode: Mode) -> Any:
        return await self._pooled(mode, query.postgres, args)

    async def ping(self) -> None:
        await self.fetch_val(_Q.ping)

    async def schema_status(self) -> SchemaStatus:
        return await migrate.read_status(self, self._migrations)

    async def migrate(self, *, dry_run: bool = False) -> tuple[str, ...]:
        return await migrate.apply_migrations(self, self._migrations, dry_run=dry_run)

    async def unit(self, work: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        """`work(tx, *args)` in one transaction, crossing the bridge once (`Store.unit`)."""
        result: _T = await self.call(_run_unit, self.pool, self._secrets, work, args)
        return result

    @asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[PostgresListener]:
        """LISTEN on `channel` over a dedicated connection until the block exits. Raises
        `Unavailable` when it cannot connect; the listener's `receive` raises it once the
        connection is lost."""
        listener = PostgresListener(self)
        listener.conn = await self.call(
            _connect_listener, self._settings, channel, listener.on_notify, listener.on_lost
        )
        try:
            yield listener
        finally:
            with trio.move_on_after(CLEANUP_TIMEOUT_S * 2, shield=True):
                await trio_asyncio.aio_as_trio(_close_listener, loop=self._loop)(listener.conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTx]:
        tx = PostgresTx(self)
        try:
            yield tx
            await tx.finish(commit=True)
        except BaseException:
            # Also reached when a cancellation stopped the commit before it started. The
            # error that ended the block matters more than a failed rollback, whose
            # connection is terminated anyway.
            with trio.move_on_after(CLEANUP_TIMEOUT_S * 2, shield=True), suppress(DatabaseError):
                await tx.finish(commit=False)
            raise


def _secrets(url: str) -> tuple[str, ...]:
    try:
        password = urlsplit(url).password or ""
    except ValueError:
        return ()
    return tuple(p for p in {password, unquote(password)} if len(p) >= 4)


@asynccontextmanager
async def open_postgres_store(
    settings: DatabaseSettings,
    *,
    description: str,
    migrations: Sequence[MigrationSource],
) -> AsyncIterator[PostgresStore]:
    """Create the connection pool (`pool_min_size` connections at once) for `settings.url`.

    Needs a running `trio_asyncio.open_loop()`, which must outlive the store. Raises
    `Unavailable` when the server cannot be reached. On exit waits (bounded) for borrowed
    connections and closes the pool, shielded from cancellation; terminates it on timeout.
    """
    loop = trio_asyncio.current_loop.get()
    if loop is None:
        raise RuntimeError("PostgreSQL needs a running trio_asyncio.open_loop()")
    secrets = _secrets(settings.url)
    available = migrate.load_migrations("postgres", migrations)
    bound = settings.connect_timeout_s + settings.command_timeout_s
    try:
        with trio.fail_after(bound):
            pool = await trio_asyncio.aio_as_trio(_create_pool, loop=loop)(settings)
    except trio.TooSlowError as exc:
        raise Unavailable(f"PostgreSQL: no answer within {bound:g} s") from exc
    except _TRANSLATED as exc:
        raise map_error(exc, secrets) from exc
    store = PostgresStore(
        pool,
        loop,
        settings=settings,
        description=description,
        secrets=secrets,
        migrations=available,
    )
    try:
        yield store
    finally:
        with trio.move_on_after(CLEANUP_TIMEOUT_S * 2, shield=True):
            await trio_asyncio.aio_as_trio(_close_pool, loop=loop)(pool)
