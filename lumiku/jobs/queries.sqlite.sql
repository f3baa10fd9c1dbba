-- SQLite forms of blocks in queries.sql. No row locks and no SKIP LOCKED: the single
-- writer transaction (BEGIN IMMEDIATE) already excludes every other writer.

-- name: insert_job
-- Nothing to notify: one instance (`jobs.signals`).
INSERT INTO jobs (id, kind, app, user_id, status, priority, payload, max_attempts, run_after,
                  progress, cost, event_seq, request_id, idempotency_key, created_at, updated_at)
VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10, 1, $11, $12, $8, $8)
RETURNING *

-- name: lock_job
SELECT * FROM jobs WHERE id = $1

-- name: lock_running
SELECT * FROM jobs WHERE id = $1 AND attempt = $2 AND status = 'running'

-- name: claim_candidates
WITH due AS (
    SELECT j.id,
           row_number() OVER (PARTITION BY j.user_id ORDER BY j.priority DESC, j.id) AS place,
           (SELECT count(*) FROM jobs r
            WHERE r.user_id = j.user_id AND r.status = 'running') AS running
    FROM jobs j
    WHERE j.status = 'queued' AND NOT j.cancel_requested AND j.kind = $1 AND j.run_after <= $2
)
SELECT jobs.id, jobs.user_id, due.place
FROM jobs JOIN due ON due.id = jobs.id
WHERE due.place + due.running <= $3 AND jobs.status = 'queued'
ORDER BY jobs.priority DESC, jobs.id
LIMIT $4

-- name: lock_users
-- The writer transaction is the lock.
SELECT value AS user_key FROM json_each($1)

-- name: claim_picked
WITH want AS (
    SELECT i.value AS id, p.value AS place, u.value AS user_id
    FROM json_each($1) AS i
    JOIN json_each($2) AS p ON p.key = i.key
    JOIN json_each($3) AS u ON u.key = i.key
    WHERE u.value IN (SELECT value FROM json_each($8))
), running AS (
    SELECT r.user_id, count(*) AS n FROM jobs r
    WHERE r.status = 'running' AND r.user_id IN (SELECT user_id FROM want)
    GROUP BY r.user_id
), pick AS (
    SELECT want.id FROM want LEFT JOIN running ON running.user_id = want.user_id
    WHERE want.place <= $4 - coalesce(running.n, 0)
)
UPDATE jobs
SET status = 'running', attempt = attempt + 1, worker_id = $5, lease_expires_at = $6,
    started_at = $7, updated_at = $7, event_seq = event_seq + 1
FROM pick
WHERE jobs.id = pick.id AND jobs.status = 'queued' AND NOT jobs.cancel_requested
RETURNING *

-- name: expired_leases
SELECT id, attempt FROM jobs
WHERE status = 'running' AND lease_expires_at <= $1
ORDER BY lease_expires_at
LIMIT $2

-- name: user_jobs_page
SELECT * FROM jobs
WHERE user_id = $1 AND id < $2
  AND ($3 IS NULL OR status = $3) AND ($4 IS NULL OR kind = $4)
ORDER BY id DESC
LIMIT $5

-- name: admin_jobs_page
SELECT * FROM jobs
WHERE id < $1 AND ($2 IS NULL OR status = $2)
ORDER BY id DESC
LIMIT $3

-- name: job_charges_without_job
-- The id column holds the text form, so the primary key index answers the lookup.
SELECT e.id, e.user_id, e.ref_id, e.delta
FROM credit_entries e
WHERE e.kind = 'charge' AND e.ref_type = 'job'
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = substr(e.ref_id, 1, 36))
ORDER BY e.id

-- name: complete_running_batch
UPDATE jobs
SET status = 'succeeded', result = d.value ->> '$.result', error = NULL, finished_at = $2,
    updated_at = $2, lease_expires_at = NULL,
    event_seq = max(jobs.event_seq, d.value ->> '$.seen_seq') + 1,
    progress = COALESCE(d.value ->> '$.progress', jobs.progress)
FROM json_each($1) AS d
WHERE jobs.id = d.value ->> '$.id' AND jobs.attempt = d.value ->> '$.attempt'
    AND jobs.status = 'running'
RETURNING *

-- name: renew_leases
UPDATE jobs SET lease_expires_at = $3, updated_at = $4
FROM json_each($1) AS d
WHERE jobs.id = d.value ->> '$.id' AND jobs.attempt = d.value ->> '$.attempt'
    AND jobs.status = 'running' AND jobs.worker_id = $2
RETURNING id, cancel_requested
