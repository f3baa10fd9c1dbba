-- name: backend_pid
-- One process: the writer is the only connection a transaction uses.
SELECT 0

-- name: table_exists
SELECT count(*) > 0 FROM sqlite_schema WHERE type = 'table' AND name = $1

-- name: counter_for_update
-- No row locks in SQLite: the single writer transaction already excludes other writers.
SELECT n FROM counters WHERE id = $1
