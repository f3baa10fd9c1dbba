-- SQLite forms of blocks in queries.sql: no row locks (the single writer transaction
-- already excludes every other writer).

-- name: lock_project
SELECT * FROM pose_projects WHERE id = $1 AND user_id = $2

-- name: lock_request
SELECT * FROM pose_requests WHERE id = $1

-- name: works_poses
SELECT generation_id, image_key FROM generated_poses
WHERE generation_id IN (SELECT value FROM json_each($1)) AND status = 'succeeded'
  AND image_key IS NOT NULL
ORDER BY generation_id, id

-- name: active_background_changes
SELECT count(*) FROM jobs j
WHERE j.user_id = $2 AND j.kind = 'pose.background' AND j.status IN ('queued', 'running')
  AND json_extract(j.payload, '$.pose_id') IN
      (SELECT id FROM generated_poses WHERE generation_id = $1)

-- name: lock_work
SELECT g.id, j.status FROM pose_generations g JOIN jobs j ON j.id = g.job_id
WHERE g.id = $1 AND g.user_id = $2
