-- Avatar Creator (SPEC §8.1): projects, avatars, generations, usage. Every statement that
-- reads or writes one resource takes its owner, so someone else's id finds nothing.

-- Projects ---------------------------------------------------------------------------------

-- name: insert_project
INSERT INTO avatar_projects (id, user_id, name, description, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $5)
RETURNING id, user_id, name, description, created_at, updated_at

-- name: project_by_id
SELECT id, user_id, name, description, created_at, updated_at
FROM avatar_projects WHERE id = $1 AND user_id = $2

-- name: projects_page
-- Newest first, older than the cursor's id ($2); one more than the page to know if more.
SELECT p.id, p.user_id, p.name, p.description, p.created_at, p.updated_at,
       (SELECT count(*) FROM avatars a WHERE a.project_id = p.id) AS avatar_count
FROM avatar_projects p
WHERE p.user_id = $1 AND p.id < $2
ORDER BY p.id DESC
LIMIT $3

-- name: update_project
UPDATE avatar_projects SET name = $3, description = $4, updated_at = $5
WHERE id = $1 AND user_id = $2
RETURNING id, user_id, name, description, created_at, updated_at

-- name: delete_project
DELETE FROM avatar_projects WHERE id = $1 AND user_id = $2

-- name: project_generation_ids
SELECT id FROM avatar_generations WHERE project_id = $1

-- Avatars ----------------------------------------------------------------------------------

-- name: insert_avatar
-- A generation's avatar is made once: a job that runs again finds no row back here and
-- reads the avatar it made before (avatar_by_generation).
INSERT INTO avatars (id, user_id, project_id, name, source_type, image_key, thumbnail_key,
                     width, height, persona, attributes, prompt, preset_id, seed,
                     generation_id, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16)
ON CONFLICT (generation_id) WHERE generation_id IS NOT NULL DO NOTHING
RETURNING id, user_id, project_id, name, source_type, image_key, thumbnail_key, width, height,
          persona, attributes, prompt, preset_id, seed, generation_id, usage_count,
          last_used_at, created_at, updated_at

-- name: avatar_by_id
SELECT id, user_id, project_id, name, source_type, image_key, thumbnail_key, width, height,
       persona, attributes, prompt, preset_id, seed, generation_id, usage_count,
       last_used_at, created_at, updated_at
FROM avatars WHERE id = $1 AND user_id = $2

-- name: avatar_by_generation
SELECT id, user_id, project_id, name, source_type, image_key, thumbnail_key, width, height,
       persona, attributes, prompt, preset_id, seed, generation_id, usage_count,
       last_used_at, created_at, updated_at
FROM avatars WHERE generation_id = $1

-- name: project_avatars
SELECT id, user_id, project_id, name, source_type, image_key, thumbnail_key, width, height,
       persona, attributes, prompt, preset_id, seed, generation_id, usage_count,
       last_used_at, created_at, updated_at
FROM avatars WHERE project_id = $1 AND user_id = $2
ORDER BY id DESC

-- name: update_avatar
UPDATE avatars SET name = $3, persona = $4, attributes = $5, updated_at = $6
WHERE id = $1 AND user_id = $2
RETURNING id, user_id, project_id, name, source_type, image_key, thumbnail_key, width, height,
          persona, attributes, prompt, preset_id, seed, generation_id, usage_count,
          last_used_at, created_at, updated_at

-- name: delete_avatar
DELETE FROM avatars WHERE id = $1 AND user_id = $2

-- name: avatar_image_key
-- For other apps (Pose Generator): the image of the user's avatar, nothing else.
SELECT image_key FROM avatars WHERE id = $1 AND user_id = $2

-- name: avatar_usage_page
SELECT id, avatar_id, app, action, reference_id, created_at
FROM avatar_usage WHERE avatar_id = $1 AND user_id = $2 AND id < $3
ORDER BY id DESC
LIMIT $4

-- name: insert_usage
INSERT INTO avatar_usage (id, avatar_id, user_id, app, action, reference_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)

-- name: count_usage
UPDATE avatars SET usage_count = usage_count + 1, last_used_at = $3
WHERE id = $1 AND user_id = $2

-- Generations ------------------------------------------------------------------------------

-- name: insert_generation
INSERT INTO avatar_generations (id, user_id, project_id, job_id, source_type, request,
                                credit_charged, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)

-- name: generation_by_id
-- The generation with its job's status, progress, result and error (the job owns them).
SELECT g.id, g.project_id, g.job_id, g.source_type, g.request, g.credit_charged,
       g.created_at, j.status, j.progress, j.error, j.refunded
FROM avatar_generations g JOIN jobs j ON j.id = g.job_id
WHERE g.id = $1 AND g.user_id = $2

-- name: generation_by_job
SELECT g.id, g.project_id, g.job_id, g.source_type, g.request, g.credit_charged,
       g.created_at, j.status, j.progress, j.error, j.refunded
FROM avatar_generations g JOIN jobs j ON j.id = g.job_id
WHERE g.job_id = $1 AND g.user_id = $2

-- My Work (apps/works.py) ------------------------------------------------------------------

-- name: works_page
-- The user's generations below the cursor ($2), newest first, with their job's state and
-- the avatar once made; $3 a job status, '' for any.
SELECT g.id, g.job_id, g.request, g.credit_charged, g.created_at, j.status, j.progress,
       j.finished_at, a.name AS avatar_name, a.image_key, a.thumbnail_key
FROM avatar_generations g
JOIN jobs j ON j.id = g.job_id
LEFT JOIN avatars a ON a.generation_id = g.id
WHERE g.user_id = $1 AND g.id < $2 AND ($3 = '' OR j.status = $3)
ORDER BY g.id DESC
LIMIT $4

-- name: lock_work
-- The generation and its job, locked: an admin retry cannot re-queue it while it is deleted.
SELECT g.id, j.status FROM avatar_generations g JOIN jobs j ON j.id = g.job_id
WHERE g.id = $1 AND g.user_id = $2
FOR UPDATE

-- name: delete_generation_avatar
DELETE FROM avatars WHERE generation_id = $1 AND user_id = $2

-- name: delete_generation
DELETE FROM avatar_generations WHERE id = $1 AND user_id = $2

-- name: generations_since
SELECT count(*) FROM avatar_generations WHERE user_id = $1 AND created_at >= $2

-- Stats ------------------------------------------------------------------------------------

-- name: avatar_counts
SELECT source_type, count(*) AS avatars FROM avatars WHERE user_id = $1 GROUP BY source_type

-- name: project_count
SELECT count(*) FROM avatar_projects WHERE user_id = $1

-- name: generation_credits
-- What the user's generations kept: charged minus refunded.
SELECT coalesce(sum(cost - refunded), 0) FROM jobs WHERE user_id = $1 AND app = $2

-- name: upload_credits
SELECT coalesce(sum(-delta), 0) FROM credit_entries
WHERE user_id = $1 AND kind = 'charge' AND ref_type = $2
