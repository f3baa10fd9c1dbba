"""SQLite backend: stdlib `sqlite3` in worker threads (the ONLY module importing sqlite3).

WAL mode, `foreign_keys=ON`, a busy timeout. ONE writer: a `trio.Lock` serialises write
transactions (`BEGIN IMMEDIATE`) and single write statements on the writer connection,
while reads outside transactions use a small set of read-only connections and never wait
for the writer. A statement runs to completion once started (threads cannot be
interrupted); cancellation takes effect at the next checkpoint and rolls back.

Types follow the declared column type (`detect_types=PARSE_DECLTYPES`): TIMESTAMP is stored
as fixed-width ISO-8601 UTC text (`2025-01-02T03:04:05.123456Z`, so it sorts as text; in
SQL write "now" as `strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')`), UUID as its text form,
JSON as JSON text, BOOLEAN as 0/1.
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, TypeVar

import trio

from lumiku.db import migrate
from lumiku.db.queries import is_read_only, load_queries
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

    from lumiku.db.migrate import MigrationSource, SchemaStatus
    from lumiku.db.queries import Query
    from lumiku.db.store import Mode

READERS: Final = 4
# The default bound on waiting for the writer (`database.command_timeout_s`).
WRITER_WAIT_S: Final = 8.0
_Q: Final = load_queries("lumiku.db")
_T = TypeVar("_T")


def library_version() -> str:
    """The version of the SQLite library this Python links (for `lumiku --version`)."""
    return sqlite3.sqlite_version


def _adapt_datetime(value: datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: pass a timezone-aware (UTC) datetime")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _convert_timestamp(raw: bytes) -> datetime:
    value = datetime.fromisoformat(raw.decode())
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


sqlite3.register_adapter(datetime, _adapt_datetime)
sqlite3.register_adapter(uuid.UUID, str)
sqlite3.register_adapter(dict, _dumps)
sqlite3.register_adapter(list, _dumps)
sqlite3.register_converter("TIMESTAMP", _convert_timestamp)
sqlite3.register_converter("UUID", lambda raw: uuid.UUID(raw.decode()))
sqlite3.register_converter("JSON", json.loads)
sqlite3.register_converter("BOOLEAN", lambda raw: bool(int(raw)))


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> dict[str, Any]:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


def _connect(path: str, busy_timeout_s: float, *, read_only: bool) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout_s,
        detect_types=sqlite3.PARSE_DECLTYPES | sqlite3.PARSE_COLNAMES,
        isolation_level=None,  # we issue BEGIN IMMEDIATE ourselves
        check_same_thread=False,  # used by one thread at a time, never concurrently
    )
    try:
        conn.row_factory = _dict_row
        conn.execute(_Q.sqlite_foreign_keys_on.sqlite)
        conn.execute(_Q.sqlite_synchronous_normal.sqlite)
        if read_only:
            conn.execute(_Q.sqlite_query_only.sqlite)
        else:
            conn.execute(_Q.sqlite_journal_wal.sqlite).fetchall()
    except BaseException:
        conn.close()
        raise
    return conn


# Error names (sqlite3.Error.sqlite_errorname) that mean the database cannot be used now.
_UNAVAILABLE: Final = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_NOTADB",
    "SQLITE_FULL",
)


def map_error(conn: sqlite3.Connection, exc: Exception) -> DatabaseError:
    """The `DatabaseError` for a sqlite3 (or adapter) error; runs in the worker thread, as
    naming a UNIQUE constraint may read the schema through `conn`."""
    message = str(exc)
    name = getattr(exc, "sqlite_errorname", "") or ""
    if isinstance(exc, sqlite3.IntegrityError):
        kind, _, detail = message.partition(" constraint failed: ")
        if kind == "UNIQUE":
            return UniqueViolation(message, _unique_name(conn, name, detail))
        if kind == "CHECK":
            return CheckViolation(message, detail)
        if kind == "NOT NULL":
            return CheckViolation(message, detail.replace(".", "_", 1) + "_not_null")
        return IntegrityViolation(message)
    if name.startswith(_UNAVAILABLE) or "closed database" in message:
        return Unavailable(f"SQLite: {message}")
    return DatabaseError(f"SQLite: {message}")


def _unique_name(conn: sqlite3.Connection, errorname: str, detail: str) -> str | None:
    """PostgreSQL's name for the violated constraint: an index's own name, else
    `<table>_pkey` or `<table>_<columns>_key` (PostgreSQL's defaults)."""
    if detail.startswith("index '"):
        return detail.removeprefix("index '").removesuffix("'")
    table, columns = "", []
    for qualified in detail.split(", "):
        table, _, column = qualified.partition(".")
        columns.append(column)
    if errorname == "SQLITE_CONSTRAINT_PRIMARYKEY":
        return f"{table}_pkey"
    default = f"{table}_{'_'.join(columns)}_key"
    try:
        for index in conn.execute(_Q.sqlite_unique_indexes.sqlite, (table,)).fetchall():
            cursor = conn.execute(_Q.sqlite_index_columns.sqlite, (index["name"],))
            if [row["name"] for row in cursor.fetchall()] == columns:
                if index["origin"] == "c":
                    return str(index["name"])
                return f"{table}_pkey" if index["origin"] == "pk" else default
    except sqlite3.Error:
        pass
    return default


def _run_statement(conn: sqlite3.Connection, sql: str, args: Sequence[Any], mode: Mode) -> Any:
    """Run one statement on `conn` (in a worker thread); translate its errors."""
    try:
        if mode == "many":
            conn.executemany(sql, args).close()
            return None
        cursor = conn.execute(sql, args)
        try:
            if mode == "one":
                return cursor.fetchone()
            if mode == "all":
                return cursor.fetchall()
            if mode == "val":
                row = cursor.fetchone()
                return None if row is None else next(iter(row.values()))
            cursor.fetchall()
            return max(cursor.rowcount, 0)
        finally:
            cursor.close()
    except (sqlite3.Error, ValueError, TypeError, OverflowError) as exc:
        raise map_error(conn, exc) from exc


def _split_script(sql: str) -> list[str]:
    """The complete statements of a script, in order (triggers and literals kept whole)."""
    statements, pending = [], ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\r\n;"):
                statements.append(pending)
            pending = ""
    if pending.strip(" \t\r\n;"):
        statements.append(pending)
    return statements


class SqliteTx(BaseExecutor):
    """A write transaction on the writer connection; BEGIN IMMEDIATE runs with the first
    statement, in the same thread hop."""

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._began = False
        self._failed = False
        self._closed = False

    async def _statement(self, sql: str, args: Sequence[Any], mode: Mode) -> Any:
        if self._closed:
            raise DatabaseError("the transaction is already finished")
        if self._failed:
            raise DatabaseError("the transaction is aborted after an error; it will roll back")
        conn = self._store.writer
        began = self._began

        def work() -> Any:
            if not began:
                try:
                    conn.execute(_Q.sqlite_begin_write.sqlite)
                except sqlite3.Error as exc:
                    raise map_error(conn, exc) from exc
            elif not conn.in_transaction:
                raise DatabaseError("SQLite rolled the transaction back after an error")
            return _run_statement(conn, sql, args, mode)

        try:
            return await self._store.run(work)
        except BaseException:
            self._failed = True
            raise
        finally:
            self._began = conn.in_transaction

    async def _run(self, query: Query, args: tuple[Any, ...], mode: Mode) -> Any:
        return await self._statement(query.sqlite, args, mode)

    async def execute_script(self, sql: str) -> None:
        for statement in _split_script(sql):
            await self._statement(statement, (), "count")

    async def notify(self, channel: str, payload: str) -> None:
        """Nothing to do: a SQLite database has one instance, whose callers signal their own
        tasks directly (see `Store.listen`)."""

    async def finish(self, *, commit: bool) -> None:
        """Commit (or roll back) what began, leaving the writer idle; a no-op once done."""
        self._closed = True
        if self._began:
            conn = self._store.writer
            await self._store.run(lambda: self._end(conn, commit=commit and not self._failed))
        if commit and self._failed:
            raise DatabaseError("the transaction was aborted by an error and rolled back")

    def _end(self, conn: sqlite3.Connection, *, commit: bool) -> None:
        try:
            if commit:
                conn.commit()
            else:
                conn.rollback()
        except sqlite3.Error as exc:
            with suppress(sqlite3.Error):
                conn.rollback()
            raise map_error(conn, exc) from exc
        finally:
            self._began = conn.in_transaction


class SqliteListener:
    """`Store.listen` on SQLite: no other process can notify."""

    async def receive(self) -> str:
        await trio.sleep_forever()

    async def ping(self) -> None:
        return None


class SqliteStore(BaseExecutor):
    """See `store.Store`. Built by `open_sqlite_store`."""

    backend: Final = "sqlite"

    def __init__(
        self,
        path: str,
        *,
        busy_timeout_s: float,
        description: str,
        migrations: tuple[migrate.Migration, ...],
        writer_wait_s: float = WRITER_WAIT_S,
    ) -> None:
        self.description = description
        self._path = path
        self._busy_timeout_s = busy_timeout_s
        self._writer_wait_s = writer_wait_s
        self._migrations = migrations
        self._write_lock = trio.Lock()
        # An in-memory database exists once per connection: everything uses the writer.
        readers = 0 if path == ":memory:" else READERS
        self._readers = readers
        self._reader_slots = trio.Semaphore(readers) if readers else None
        self._idle_readers: list[sqlite3.Connection] = []
        self._limiter = trio.CapacityLimiter(readers + 1)
        self._writer: sqlite3.Connection | None = None

    @property
    def writer(self) -> sqlite3.Connection:
        if self._writer is None:
            raise Unavailable("the SQLite store is closed")
        return self._writer

    async def run(self, fn: Callable[[], _T]) -> _T:
        """Run `fn` in a worker thread (not cancellable once started)."""
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    async def _connect(self, *, read_only: bool) -> sqlite3.Connection:
        try:
            return await self.run(
                lambda: _connect(self._path, self._busy_timeout_s, read_only=read_only)
            )
        except sqlite3.Error as exc:
            raise Unavailable(f"cannot open SQLite database {self._path}: {exc}") from exc

    async def open(self) -> None:
        if self._path != ":memory:":
            path = self._path
            try:
                await trio.to_thread.run_sync(
                    lambda: os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                )
            except OSError as exc:
                raise Unavailable(f"cannot create the directory of {path}: {exc}") from exc
        self._writer = await self._connect(read_only=False)

    async def close(self) -> None:
        connections = [*self._idle_readers, *([self._writer] if self._writer else [])]
        self._idle_readers.clear()
        self._writer = None
        with trio.CancelScope(shield=True):
            for conn in connections:
                await self.run(conn.close)

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """Hold the writer; raise `Unavailable` when it stays busy past `writer_wait_s`
        (a long transaction, or statements each waiting out the busy timeout behind
        another process's lock), so a queue of writers cannot hold requests for long."""
        try:
            with trio.fail_after(self._writer_wait_s):
                await self._write_lock.acquire()
        except trio.TooSlowError as exc:
            raise Unavailable(
                f"SQLite: the writer stayed busy for {self._writer_wait_s:g} s"
            ) from exc
        try:
            yield
        finally:
            self._write_lock.release()

    async def _on_reader(self, sql: str, args: Sequence[Any], mode: Mode) -> Any:
        if self._reader_slots is None or not is_read_only(sql):
            async with self._writing():
                conn = self.writer
                return await self.run(lambda: _run_statement(conn, sql, args, mode))
        async with self._reader_slots:
            if self._writer is None:
                raise Unavailable("the SQLite store is closed")
            if self._idle_readers:
                reader = self._idle_readers.pop()
            else:
                reader = await self._connect(read_only=True)
            try:
                return await self.run(lambda: _run_statement(reader, sql, args, mode))
            finally:
                self._give_back(reader)

    def _give_back(self, reader: sqlite3.Connection) -> None:
        if self._writer is None:  # the store closed meanwhile
            reader.close()
        else:
            self._idle_readers.append(reader)

    async def _run(self, query: Query, args: tuple[Any, ...], mode: Mode) -> Any:
        return await self._on_reader(query.sqlite, args, mode)

    def pool_statistics(self) -> PoolStatistics:
        """The writer (in use while its lock is held) and the reader connections."""
        readers_busy = self._readers - self._reader_slots.value if self._reader_slots else 0
        writer_busy = int(self._write_lock.locked())
        size = len(self._idle_readers) + readers_busy + (self._writer is not None)
        return PoolStatistics(size, readers_busy + writer_busy, self._readers + 1)

    async def ping(self) -> None:
        await self.fetch_val(_Q.ping)

    async def schema_status(self) -> SchemaStatus:
        return await migrate.read_status(self, self._migrations)

    async def migrate(self, *, dry_run: bool = False) -> tuple[str, ...]:
        return await migrate.apply_migrations(self, self._migrations, dry_run=dry_run)

    async def unit(self, work: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        """`work(tx, *args)` in one transaction (see `Store.unit`)."""
        async with self.transaction() as tx:
            result: _T = await work(tx, *args)
        return result

    @asynccontextmanager
    async def listen(self, channel: str) -> AsyncIterator[SqliteListener]:
        """A listener that never receives: nothing else shares a SQLite database."""
        yield SqliteListener()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        async with self._writing():
            tx = SqliteTx(self)
            try:
                yield tx
                await tx.finish(commit=True)
            except BaseException:
                # Also reached when a cancellation stopped the commit before its thread
                # started. The error that ended the block matters more than a failed rollback.
                with trio.CancelScope(shield=True), suppress(DatabaseError):
                    await tx.finish(commit=False)
                raise


@asynccontextmanager
async def open_sqlite_store(
    path: str,
    *,
    busy_timeout_s: float,
    description: str,
    migrations: Sequence[MigrationSource],
    writer_wait_s: float = WRITER_WAIT_S,
) -> AsyncIterator[SqliteStore]:
    """Open the SQLite database at `path` (creating its directory and file).

    Each statement waits at most `busy_timeout_s` for another process's lock, and at most
    `writer_wait_s` for this process's writer. Raises `Unavailable` when the file cannot be
    created or opened. On exit closes every connection, shielded from cancellation; the
    caller must have finished its transactions.
    """
    store = SqliteStore(
        path,
        busy_timeout_s=busy_timeout_s,
        description=description,
        migrations=migrate.load_migrations("sqlite", migrations),
        writer_wait_s=writer_wait_s,
    )
    try:
        await store.open()
        yield store
    finally:
        await store.close()
