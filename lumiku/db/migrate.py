"""Forward-only migrations, the same for both backends.

Each backend has its own numbered files, `migrations/{postgres,sqlite}/NNNN_name.sql`, with
the same set of names. A migration runs in one transaction together with its row in
`schema_migrations` (version, name, applied_at, checksum), so it is applied completely or
not at all. The migrator never touches a schema that has migrations this build does not
know, nor one whose applied migration files changed: both raise `SchemaMismatch`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, TypeAlias

import attrs

from lumiku.db.queries import load_queries
from lumiku.errors import SchemaMismatch

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.resources.abc import Traversable

    from lumiku.db.store import Row, Store

# A package name (str) whose `migrations/<backend>/` holds the files, or a directory
# (os.PathLike) holding `<backend>/`.
MigrationSource: TypeAlias = str | os.PathLike[str]

DEFAULT_SOURCES: Final[tuple[MigrationSource, ...]] = ("lumiku.db",)
# Key of the PostgreSQL advisory lock serialising migrators (any constant bigint).
LOCK_KEY: Final = 0x6C756D696B75
_FILE_NAME: Final = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_Q: Final = load_queries("lumiku.db")


@attrs.frozen
class Migration:
    """One migration file of one backend."""

    version: int
    name: str
    sql: str
    checksum: str


@attrs.frozen
class SchemaStatus:
    """Where a database stands against the migrations of this build."""

    applied: tuple[str, ...]
    available: tuple[str, ...]
    # Applied migrations whose file changed since (checksum differs).
    changed: tuple[str, ...] = ()

    @property
    def pending(self) -> tuple[str, ...]:
        """Available but not applied: the schema is behind."""
        applied = set(self.applied)
        return tuple(name for name in self.available if name not in applied)

    @property
    def unknown(self) -> tuple[str, ...]:
        """Applied but not in this build: the schema is ahead."""
        available = set(self.available)
        return tuple(name for name in self.applied if name not in available)

    @property
    def is_current(self) -> bool:
        return not (self.pending or self.unknown or self.changed)

    @property
    def version(self) -> int:
        """Number of the highest applied migration, 0 for an empty schema."""
        return max((int(name.split("_", 1)[0]) for name in self.applied), default=0)


def _directory(source: MigrationSource, backend: str) -> Traversable:
    if isinstance(source, str):
        return importlib.resources.files(source).joinpath("migrations", backend)
    return Path(source) / backend


def load_migrations(
    backend: str, sources: Sequence[MigrationSource] = DEFAULT_SOURCES
) -> tuple[Migration, ...]:
    """The migrations of `backend` from all `sources`, ordered by version.

    Files not ending in `.sql` are ignored; a `.sql` file not named `NNNN_name.sql`, or two
    migrations with the same number, raise `ValueError`.
    """
    found: dict[int, Migration] = {}
    for source in sources:
        directory = _directory(source, backend)
        if not directory.is_dir():
            raise ValueError(f"no {backend} migrations directory in {source}")
        for entry in directory.iterdir():
            if not entry.name.endswith(".sql"):
                continue
            match = _FILE_NAME.match(entry.name)
            if not match:
                raise ValueError(f"{source}: {entry.name} is not named NNNN_name.sql")
            version = int(match.group(1))
            name = entry.name.removesuffix(".sql")
            if version in found:
                raise ValueError(f"{name} and {found[version].name} share a version number")
            sql = entry.read_text(encoding="utf-8").replace("\r\n", "\n")
            checksum = hashlib.sha256(sql.encode()).hexdigest()
            found[version] = Migration(version, name, sql, checksum)
    return tuple(found[v] for v in sorted(found))


async def read_status(db: Store, migrations: Sequence[Migration]) -> SchemaStatus:
    """The schema status; reads only, creating nothing."""
    if not await db.fetch_val(_Q.schema_migrations_exists):
        return SchemaStatus((), tuple(m.name for m in migrations))
    return _status(await db.fetch_all(_Q.applied_migrations), migrations)


def _status(rows: Sequence[Row], migrations: Sequence[Migration]) -> SchemaStatus:
    by_name = {m.name: m for m in migrations}
    applied = tuple(row["name"] for row in rows)
    changed = tuple(
        row["name"]
        for row in rows
        if row["name"] in by_name and by_name[row["name"]].checksum != row["checksum"]
    )
    return SchemaStatus(applied, tuple(by_name), changed)


def _refuse_mismatch(status: SchemaStatus) -> None:
    if status.unknown:
        raise SchemaMismatch(
            "the database has migrations this build does not know "
            f"({', '.join(status.unknown)}): it is newer than this build"
        )
    if status.changed:
        raise SchemaMismatch(
            f"applied migrations changed since they ran: {', '.join(status.changed)}"
        )
    late = [name for name in status.pending if int(name.split("_", 1)[0]) < status.version]
    if late:
        raise SchemaMismatch(
            f"pending migrations numbered below the applied version {status.version}: "
            f"{', '.join(late)}; renumber them after it"
        )


async def apply_migrations(
    db: Store, migrations: Sequence[Migration], *, dry_run: bool = False
) -> tuple[str, ...]:
    """Apply pending migrations in order, each in its own transaction; return their names.

    With `dry_run`, only return what would be applied. Raises `SchemaMismatch` (before
    changing anything) when the schema is ahead, an applied file changed, or a pending
    migration is numbered below one already applied (out of order). A failing
    migration rolls back completely and its error propagates; the ones before it stay.
    """
    status = await read_status(db, migrations)
    _refuse_mismatch(status)
    if dry_run or not status.pending:
        return status.pending if dry_run else ()
    async with db.transaction() as tx:
        await tx.execute(_Q.lock_migrations, LOCK_KEY)
        await tx.execute(_Q.create_schema_migrations)
    done = []
    for migration in migrations:
        if migration.name not in status.pending:
            continue
        async with db.transaction() as tx:
            await tx.execute(_Q.lock_migrations, LOCK_KEY)
            # Another instance may have migrated while we waited for the lock.
            current = _status(await tx.fetch_all(_Q.applied_migrations), migrations)
            _refuse_mismatch(current)
            if migration.name in current.applied:
                continue
            await tx.execute_script(migration.sql)
            await tx.execute(
                _Q.record_migration,
                migration.version,
                migration.name,
                datetime.now(UTC),
                migration.checksum,
            )
        done.append(migration.name)
    return tuple(done)
