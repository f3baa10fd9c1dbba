-- SQLite forms of blocks in queries.sql: no row locks (the single writer transaction
-- already excludes every other writer).

-- name: lock_project
SELECT * FROM pose_projects WHERE id = $1 AND user_id = $2

-- name: lock_request
SELECT * FROM pose_requests WHERE id = $1
