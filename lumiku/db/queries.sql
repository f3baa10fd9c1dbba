-- Statements of the persistence layer itself: health, the migrator's bootstrap, and the
-- SQLite connection set-up. Written for PostgreSQL; queries.sqlite.sql overrides blocks
-- whose SQLite form differs.

-- name: ping
SELECT 1

-- name: schema_migrations_exists
SELECT to_regclass('schema_migrations') IS NOT NULL

-- name: create_schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL UNIQUE,
    applied_at timestamptz NOT NULL,
    checksum text NOT NULL
)

-- name: applied_migrations
SELECT version, name, checksum FROM schema_migrations ORDER BY version

-- name: record_migration
INSERT INTO schema_migrations (version, name, applied_at, checksum) VALUES ($1, $2, $3, $4)

-- name: lock_migrations
-- Held until the transaction ends, so instances starting together migrate one at a time.
SELECT pg_advisory_xact_lock($1)

-- The blocks below are used by sqlite.py only.

-- name: sqlite_begin_write
BEGIN IMMEDIATE

-- name: sqlite_journal_wal
PRAGMA journal_mode = WAL

-- name: sqlite_synchronous_normal
-- In WAL mode NORMAL never corrupts; a power loss may lose the last commits.
PRAGMA synchronous = NORMAL

-- name: sqlite_foreign_keys_on
PRAGMA foreign_keys = ON

-- name: sqlite_query_only
PRAGMA query_only = ON

-- name: sqlite_unique_indexes
SELECT name, origin FROM pragma_index_list($1) WHERE "unique" = 1 ORDER BY seq

-- name: sqlite_index_columns
SELECT name FROM pragma_index_info($1) ORDER BY seqno
