-- Statements of the job queue's contract tests: raw reads and writes that go around the
-- domain functions on purpose.

-- name: set_refunded
UPDATE jobs SET refunded = $2 WHERE id = $1

-- name: entries_for_job
SELECT kind, delta, ref_id FROM credit_entries
WHERE ref_type = 'job' AND substr(ref_id, 1, 36) = $1
ORDER BY id

-- name: count_jobs_of
SELECT count(*) FROM jobs WHERE user_id = $1

-- name: count_entries_of
SELECT count(*) FROM credit_entries WHERE user_id = $1 AND kind = $2

-- name: running_per_user
SELECT user_id, count(*) AS running FROM jobs WHERE status = 'running' GROUP BY user_id

-- name: count_keys
SELECT count(*) FROM idempotency_keys

-- name: age_key
UPDATE idempotency_keys SET expires_at = $3, created_at = $3 WHERE user_id = $1 AND key = $2

-- name: delete_job
DELETE FROM jobs WHERE id = $1

-- name: insert_processing_key
INSERT INTO idempotency_keys (user_id, key, request_hash, status, created_at, expires_at)
VALUES ($1, $2, $3, 'processing', $4, $5)

-- name: backdate_key
UPDATE idempotency_keys SET created_at = $3 WHERE user_id = $1 AND key = $2

-- name: steal_job
-- Another instance took the job over (its lease ran out, it was reaped and claimed again).
UPDATE jobs SET worker_id = 'thief', attempt = attempt + 1 WHERE id = $1

-- name: flag_cancel_quietly
-- A cancellation requested without any signal reaching the worker (its heartbeat sees it).
UPDATE jobs SET cancel_requested = true WHERE id = $1
