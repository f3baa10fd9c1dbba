-- SQLite forms of blocks in queries.sql: no row locks (the single writer transaction
-- already excludes every other writer).

-- name: lock_work
SELECT g.id, j.status FROM avatar_generations g JOIN jobs j ON j.id = g.job_id
WHERE g.id = $1 AND g.user_id = $2
