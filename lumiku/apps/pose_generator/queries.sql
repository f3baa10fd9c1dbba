-- Pose Generator (SPEC §8.2). Every read names the user: another user's id matches no row
-- (the routes answer 404). A generation's status and progress are its job's. Avatars are
-- the Avatar Creator's: read through its service, never joined here (SPEC §17).

-- Projects --------------------------------------------------------------------------------

-- name: insert_project
INSERT INTO pose_projects (id, user_id, name, description, avatar_id, image_key, created_at,
                           updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $7)

-- name: project_by_id
SELECT id, user_id, name, description, avatar_id, image_key, created_at, updated_at
FROM pose_projects
WHERE id = $1 AND user_id = $2

-- name: lock_project
SELECT * FROM pose_projects WHERE id = $1 AND user_id = $2 FOR UPDATE

-- name: projects_page
-- The user's projects, newest first, with ids below $2 (the cursor).
SELECT id, user_id, name, description, avatar_id, image_key, created_at, updated_at
FROM pose_projects
WHERE user_id = $1 AND id < $2
ORDER BY id DESC
LIMIT $3

-- name: update_project
UPDATE pose_projects SET name = $3, description = $4, avatar_id = $5, updated_at = $6
WHERE id = $1 AND user_id = $2

-- name: active_generations
-- Generations of the project whose job is still queued or running (delete waits for them).
SELECT count(*) FROM pose_generations g JOIN jobs j ON j.id = g.job_id
WHERE g.project_id = $1 AND j.status IN ('queued', 'running')

-- name: project_generation_ids
SELECT id FROM pose_generations WHERE project_id = $1

-- name: delete_project
DELETE FROM pose_projects WHERE id = $1 AND user_id = $2

-- Generations -----------------------------------------------------------------------------

-- name: insert_generation
INSERT INTO pose_generations (id, user_id, project_id, job_id, generation_type, request,
                              total_poses, credit_charged, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)

-- name: generation_by_id
SELECT * FROM pose_generations WHERE id = $1 AND user_id = $2

-- name: generation_by_job
SELECT * FROM pose_generations WHERE job_id = $1

-- name: generation_poses
SELECT * FROM generated_poses WHERE generation_id = $1 ORDER BY id

-- name: insert_pose
-- A resumed job never writes a variation twice: the first row of a key stays.
INSERT INTO generated_poses (id, generation_id, user_id, variation_key, library_pose_id,
                             status, image_key, skeleton_key, figure_key, exports, error,
                             cost, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13)
ON CONFLICT (generation_id, variation_key) DO NOTHING

-- name: pose_by_id
SELECT * FROM generated_poses WHERE id = $1 AND user_id = $2

-- name: update_pose_image
UPDATE generated_poses SET image_key = $3, exports = $4, updated_at = $5
WHERE id = $1 AND user_id = $2

-- name: update_pose_exports
UPDATE generated_poses SET exports = $3, updated_at = $4 WHERE id = $1 AND user_id = $2

-- Stats and health ------------------------------------------------------------------------

-- name: user_stats
SELECT
    (SELECT count(*) FROM pose_projects WHERE user_id = $1) AS projects,
    (SELECT count(*) FROM pose_generations WHERE user_id = $1) AS generations,
    (SELECT count(*) FROM generated_poses WHERE user_id = $1 AND status = 'succeeded')
        AS poses_succeeded,
    (SELECT count(*) FROM generated_poses WHERE user_id = $1 AND status = 'failed')
        AS poses_failed,
    (SELECT coalesce(sum(credit_charged), 0) FROM pose_generations WHERE user_id = $1)
        AS credits_charged

-- name: kind_status_counts
SELECT kind, status, count(*) AS jobs FROM jobs
WHERE kind IN ('pose.generate', 'pose.background')
GROUP BY kind, status

-- Pose requests ---------------------------------------------------------------------------

-- name: insert_request
INSERT INTO pose_requests (id, user_id, name, description, category_id, reference_url,
                           status, notes, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, 'pending', '', $7, $7)

-- name: request_by_id
SELECT * FROM pose_requests WHERE id = $1

-- name: user_requests_page
SELECT * FROM pose_requests WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3

-- name: admin_requests_page
-- Every user's requests; $2 '' for any status.
SELECT * FROM pose_requests WHERE id < $1 AND ($2 = '' OR status = $2)
ORDER BY id DESC
LIMIT $3

-- name: lock_request
SELECT * FROM pose_requests WHERE id = $1 FOR UPDATE

-- name: update_request
UPDATE pose_requests SET status = $2, notes = $3, updated_at = $4 WHERE id = $1

-- My Work (apps/works.py) -----------------------------------------------------------------

-- name: works_page
-- The user's generations below the cursor ($2), newest first, with their job's state;
-- $3 a job status, '' for any.
SELECT g.id, g.job_id, g.generation_type, g.request, g.total_poses, g.credit_charged,
       g.created_at, j.status, j.progress, j.finished_at
FROM pose_generations g JOIN jobs j ON j.id = g.job_id
WHERE g.user_id = $1 AND g.id < $2 AND ($3 = '' OR j.status = $3)
ORDER BY g.id DESC
LIMIT $4

-- name: works_poses
-- The succeeded poses of the generations $1 (a list of ids), in the order they were made.
SELECT generation_id, image_key FROM generated_poses
WHERE generation_id = ANY($1::uuid[]) AND status = 'succeeded' AND image_key IS NOT NULL
ORDER BY generation_id, id

-- name: lock_work
-- The generation and its job, locked: an admin retry cannot re-queue it while it is deleted.
SELECT g.id, j.status FROM pose_generations g JOIN jobs j ON j.id = g.job_id
WHERE g.id = $1 AND g.user_id = $2
FOR UPDATE

-- name: active_background_changes
-- New backgrounds for the generation's poses still queued or running (a delete waits).
SELECT count(*) FROM jobs j
WHERE j.user_id = $2 AND j.kind = 'pose.background' AND j.status IN ('queued', 'running')
  AND (j.payload->>'pose_id')::uuid IN (SELECT id FROM generated_poses WHERE generation_id = $1)

-- name: delete_generation
-- Its poses cascade.
DELETE FROM pose_generations WHERE id = $1 AND user_id = $2

-- name: generations_since
SELECT count(*) FROM pose_generations WHERE user_id = $1 AND created_at >= $2

-- name: project_count
SELECT count(*) FROM pose_projects WHERE user_id = $1
