"""The `Store`: one interface over PostgreSQL (asyncpg) and SQLite (stdlib sqlite3).

```python
async with open_store(settings) as store:
    await store.migrate()
    async with store.transaction() as tx:
        row = await tx.fetch_one(Q.user_by_email, email)
```

Statements are `Query` objects from `queries.py`; parameters are positional. Values cross the
boundary as the same Python types on both backends: `int`, `str`, `bool`, `None`,
timezone-aware `datetime` in UTC (naive ones are refused), `uuid.UUID`, and `dict`/`list`
for JSON columns. Rows are read-only mappings from column name to value.

Errors are `lumiku.errors.DatabaseError` and its subclasses only. After any error inside a
transaction, the transaction is aborted on both backends: further statements raise
`DatabaseError` and the block rolls back.

SQLite caveat: a value is converted by its column's declared type, so an expression
(`count(*) > 0`, `max(created_at)`) comes back as SQLite stores it (int, text). Cast in
Python, or name the type in a SQLite override: `max(created_at) AS "latest [TIMESTAMP]"`.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeAlias, TypeVar
from urllib.parse import urlsplit

import attrs

from lumiku.config import redact_url
from lumiku.db.migrate import DEFAULT_SOURCES, MigrationSource, SchemaStatus
from lumiku.errors import ConfigError, ConfigProblem

if TYPE_CHECKING:
    from lumiku.config import Settings
    from lumiku.db.queries import Query

__all__ = [
    "Executor",
    "Listener",
    "Row",
    "SchemaStatus",
    "Store",
    "Tx",
    "open_store",
    "sqlite_path",
]

T = TypeVar("T")
Row: TypeAlias = Mapping[str, Any]
# What a backend returns for a statement: one row, all rows, one value, the row count; or
# "many": the statement run once per row of parameters (`execute_many`), returning nothing.
Mode: TypeAlias = Literal["one", "all", "val", "count", "many"]

POSTGRES_SCHEMES: Final = ("postgresql", "postgres")
SQLITE_SCHEME: Final = "sqlite"


class Executor(Protocol):
    """Runs statements: a `Store` (each call its own transaction) or a `Tx`."""

    async def fetch_one(self, query: Query, *args: Any) -> Row | None:
        """The first row, or None."""
        ...

    async def fetch_all(self, query: Query, *args: Any) -> list[Row]:
        """Every row."""
        ...

    async def fetch_val(self, query: Query, *args: Any) -> Any:
        """The first column of the first row, or None when there is no row."""
        ...

    async def execute(self, query: Query, *args: Any) -> int:
        """Run a statement; return the number of rows it affected (0 for DDL)."""
        ...

    async def execute_many(self, query: Query, rows: Sequence[Sequence[Any]]) -> None:
        """Run a statement once per row of parameters, as one batch (one thread hop on
        SQLite, one pipelined call on PostgreSQL)."""
        ...


class BaseExecutor(abc.ABC):
    """The four `Executor` methods over a backend's single `_run(query, args, mode)`."""

    @abc.abstractmethod
    async def _run(self, query: Query, args: tuple[Any, ...], mode: Mode) -> Any:
        """Run `query` with `args`: mode "one" (a row), "all", "val" or "count" (rows affected)."""

    async def fetch_one(self, query: Query, *args: Any) -> Row | None:
        row: Row | None = await self._run(query, args, "one")
        return row

    async def fetch_all(self, query: Query, *args: Any) -> list[Row]:
        rows: list[Row] = await self._run(query, args, "all")
        return rows

    async def fetch_val(self, query: Query, *args: Any) -> Any:
        return await self._run(query, args, "val")

    async def execute(self, query: Query, *args: Any) -> int:
        count: int = await self._run(query, args, "count")
        return count

    async def execute_many(self, query: Query, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            await self._run(query, tuple(tuple(row) for row in rows), "many")


class Tx(Executor, Protocol):
    """An open transaction; valid only inside its `async with store.transaction()` block."""

    async def execute_script(self, sql: str) -> None:
        """Run several `;`-separated statements without parameters (migrations)."""
        ...

    async def notify(self, channel: str, payload: str) -> None:
        """Tell the other instances listening on `channel`, if this transaction commits
        (PostgreSQL NOTIFY). A no-op on SQLite, which has one instance."""
        ...


class Listener(Protocol):
    """Notifications on one channel (see `Store.listen`)."""

    async def receive(self) -> str:
        """The next payload; raises `Unavailable` once the listening connection is lost."""
        ...

    async def ping(self) -> None:
        """A round trip on the listening connection; raises `Unavailable` when it is dead."""
        ...


@attrs.frozen
class PoolStatistics:
    """A store's connections right now: open, busy with a statement or transaction, and
    the most it will open (PostgreSQL: the asyncpg pool; SQLite: the writer and the
    reader connections)."""

    size: int
    in_use: int
    max_size: int

    @property
    def idle(self) -> int:
        return self.size - self.in_use


class Store(Executor, Protocol):
    """An opened database."""

    @property
    def backend(self) -> str:
        """`"postgres"` or `"sqlite"`."""
        ...

    @property
    def description(self) -> str:
        """The database URL with its password redacted."""
        ...

    async def ping(self) -> None:
        """Round-trip to the database; raise `Unavailable` when it cannot answer."""
        ...

    async def schema_status(self) -> SchemaStatus:
        """Applied and available migrations; changes nothing."""
        ...

    async def migrate(self, *, dry_run: bool = False) -> tuple[str, ...]:
        """Apply pending migrations (see `migrate.apply_migrations`); return their names."""
        ...

    def pool_statistics(self) -> PoolStatistics:
        """The connections right now (cheap, no I/O; for metrics)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """Commit on normal exit; roll back on an exception or cancellation."""
        ...

    async def unit(self, work: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await work(tx, *args)` in one transaction, committed when it returns and rolled
        back when it raises (or is cancelled); returns what it returned.

        On PostgreSQL the whole of `work` runs on the asyncio side of the bridge, crossing
        it ONCE instead of once per statement (DESIGN: hot paths are single units of work),
        so `work` may only await `tx` (and plain Python): no trio calls inside.
        """
        ...

    def listen(self, channel: str) -> AbstractAsyncContextManager[Listener]:
        """Receive what committed transactions `notify` on `channel` while the block runs
        (PostgreSQL LISTEN on a dedicated connection; never anything on SQLite). Raises
        `Unavailable` when the database cannot be reached."""
        ...


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///relative.db`, `sqlite:////abs.db` or `sqlite:///:memory:` URL."""
    prefix = f"{SQLITE_SCHEME}:///"
    path = url[len(prefix) :] if url.startswith(prefix) else ""
    if not path or "?" in path or "#" in path:
        raise ConfigError(
            [
                ConfigProblem(
                    "database.url",
                    "open_store",
                    "must be sqlite:///relative/path.db, sqlite:////absolute/path.db "
                    "or sqlite:///:memory:",
                )
            ]
        )
    return path


@asynccontextmanager
async def open_store(
    settings: Settings, *, migrations: Sequence[MigrationSource] = DEFAULT_SOURCES
) -> AsyncIterator[Store]:
    """Open the database named by `settings.database.url`, chosen by its scheme.

    PostgreSQL (`postgresql://`, `postgres://`) needs a running `trio_asyncio.open_loop()`
    around this call. SQLite creates the file's parent directories. Raises `Unavailable`
    when the database cannot be reached and `ConfigError` for an unsupported URL. Nothing
    is migrated here; `migrations` lists where `migrate()` finds its files. On exit, waits
    for borrowed connections to come back (bounded) and closes every connection, shielded
    from cancellation.
    """
    url = settings.database.url
    try:
        scheme = urlsplit(url).scheme
    except ValueError:
        scheme = ""
    if scheme in POSTGRES_SCHEMES:
        from lumiku.db import postgres

        async with postgres.open_postgres_store(
            settings.database, description=redact_url(url), migrations=migrations
        ) as store:
            yield store
    elif scheme == SQLITE_SCHEME:
        from lumiku.db import sqlite

        async with sqlite.open_sqlite_store(
            sqlite_path(url),
            busy_timeout_s=settings.database.connect_timeout_s,
            writer_wait_s=settings.database.command_timeout_s,
            description=redact_url(url),
            migrations=migrations,
        ) as store:
            yield store
    else:
        raise ConfigError(
            [
                ConfigProblem(
                    "database.url",
                    settings.sources.get("database.url", "default"),
                    f"unsupported database scheme {scheme!r} (postgresql or sqlite)",
                )
            ]
        )
