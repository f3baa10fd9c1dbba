-- SQLite forms of blocks in queries.sql.

-- name: schema_migrations_exists
SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'

-- name: create_schema_migrations
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL UNIQUE,
    applied_at TIMESTAMP NOT NULL,
    checksum TEXT NOT NULL
)

-- name: lock_migrations
-- BEGIN IMMEDIATE already excludes every other writer; this only keeps the shape.
SELECT $1
