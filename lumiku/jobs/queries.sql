-- The job queue (SPEC §6). Every worker write is fenced on (id, attempt, status =
-- 'running'): a worker that lost its lease matches no row and writes nothing.

-- name: insert_job
-- The new job; on PostgreSQL the same statement NOTIFYs every instance's workers (delivered
-- when the transaction commits; `jobs.signals`: channel lumiku_jobs, payload wake).
WITH inserted AS (
    INSERT INTO jobs (id, kind, app, user_id, status, priority, payload, max_attempts,
                      run_after, progress, cost, event_seq, request_id, idempotency_key,
                      created_at, updated_at)
    VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $8, $9, $10, 1, $11, $12, $8, $8)
    RETURNING *
), woken AS (
    SELECT pg_notify('lumiku_jobs', 'wake')
)
SELECT inserted.* FROM inserted, woken

-- name: job_by_id
SELECT * FROM jobs WHERE id = $1

-- name: lock_job
SELECT * FROM jobs WHERE id = $1 FOR UPDATE

-- name: lock_running
-- The fence: the row only while this attempt still runs it, locked until the commit.
SELECT * FROM jobs WHERE id = $1 AND attempt = $2 AND status = 'running' FOR UPDATE

-- Idempotency keys (jobs/idempotency.py: every route's keys, jobs and uploads alike) -------

-- name: reserve_key
-- A row back: this request owns the key (new, expired, or abandoned while processing).
-- No row: a live key exists; the primary key decided the race.
INSERT INTO idempotency_keys (user_id, key, request_hash, status, created_at, expires_at)
VALUES ($1, $2, $3, 'processing', $4, $5)
ON CONFLICT (user_id, key) DO UPDATE
SET request_hash = excluded.request_hash, status = 'processing', job_id = NULL,
    response = NULL, created_at = excluded.created_at, expires_at = excluded.expires_at
WHERE idempotency_keys.expires_at <= $4
   OR (idempotency_keys.status = 'processing' AND idempotency_keys.created_at <= $6)
RETURNING user_id

-- name: key_by_id
SELECT user_id, key, request_hash, job_id, response, status, created_at, expires_at
FROM idempotency_keys WHERE user_id = $1 AND key = $2

-- name: finish_key
UPDATE idempotency_keys SET status = 'done', job_id = $4, response = $5
WHERE user_id = $1 AND key = $2 AND request_hash = $3 AND status = 'processing'

-- name: drop_key
DELETE FROM idempotency_keys
WHERE user_id = $1 AND key = $2 AND request_hash = $3 AND status = 'processing'

-- name: purge_keys
DELETE FROM idempotency_keys WHERE expires_at <= $1

-- Claiming --------------------------------------------------------------------------------

-- name: claim_candidates
-- Due queued jobs of one kind, best first, without the jobs that would put their user
-- over the running cap ($3) counting what runs now. SKIP LOCKED passes over rows another
-- claimer holds; the caller re-checks each user's count under that user's lock.
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
FOR UPDATE OF jobs SKIP LOCKED

-- name: lock_users
-- The users of $1 whose claims this transaction now serialises across instances (until
-- the commit). A try-lock never waits, so two claimers cannot deadlock (the loser skips
-- the user this round). The two-key form keeps these locks apart from the migrator's.
SELECT u.user_key FROM unnest($1::text[]) AS u(user_key)
WHERE pg_try_advisory_xact_lock(1862, hashtext(u.user_key))

-- name: claim_picked
-- Claim the candidates ($1 ids, $2 their place in their user's queue, $3 their users:
-- parallel lists) of the users locked by this transaction ($8), each while its place fits
-- under the cap ($4) minus what the user runs now, counted after the lock (this statement's
-- snapshot sees every earlier claimer's commit).
WITH want AS (
    SELECT w.id::uuid AS id, w.place, w.user_key::uuid AS user_id
    FROM unnest($1::text[], $2::int[], $3::text[]) AS w(id, place, user_key)
    WHERE w.user_key = ANY($8::text[])
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
RETURNING jobs.*

-- Worker transitions (fenced) -------------------------------------------------------------

-- name: heartbeat
UPDATE jobs SET lease_expires_at = $4, updated_at = $5
WHERE id = $1 AND attempt = $2 AND status = 'running' AND worker_id = $3

-- name: set_progress
-- The latest progress and the seq of the last event its worker published ($5).
UPDATE jobs SET progress = $3, event_seq = $5, updated_at = $4
WHERE id = $1 AND attempt = $2 AND status = 'running' AND event_seq <= $5

-- name: finish_job
-- A terminal transition of a row the caller holds (lock_running / lock_job): $3 status,
-- $5 the error (NULL for a success or a cancellation: no earlier attempt's error stays),
-- $6 credits refunded by this change, $8 the terminal event's seq, $9 the worker's latest
-- progress (NULL keeps the stored one).
UPDATE jobs
SET status = $3, result = $4, error = $5, refunded = refunded + $6, finished_at = $7,
    updated_at = $7, lease_expires_at = NULL, event_seq = $8, progress = COALESCE($9, progress)
WHERE id = $1 AND attempt = $2
RETURNING *

-- name: complete_running_batch
-- `succeeded` with nothing to refund, for many jobs in one fenced statement (no transaction
-- of its own): $1 is a JSON array of {id, attempt, result, seen_seq, progress}; each row is
-- written only while that attempt still runs it. `seen_seq`: the last seq its worker
-- published (its terminal event follows); `progress`: its latest report if not yet stored
-- (null keeps the stored one). A success clears the error of an earlier attempt.
UPDATE jobs
SET status = 'succeeded', result = d.result, error = NULL, finished_at = $2, updated_at = $2,
    lease_expires_at = NULL, event_seq = GREATEST(jobs.event_seq, d.seen_seq) + 1,
    progress = COALESCE(d.progress, jobs.progress)
FROM jsonb_to_recordset($1::jsonb)
    AS d(id uuid, attempt integer, result jsonb, seen_seq integer, progress jsonb)
WHERE jobs.id = d.id AND jobs.attempt = d.attempt AND jobs.status = 'running'
RETURNING jobs.*

-- name: requeue_job
-- Back to queued ($4: 1 counts the attempt, 0 gives it back). $6: the new event_seq (one
-- past the last published for a retry, which announces itself; the last one for a
-- shutdown release, which does not).
UPDATE jobs
SET status = 'queued', attempt = attempt - 1 + $4, run_after = $3, error = $5,
    worker_id = NULL, lease_expires_at = NULL, updated_at = $7, event_seq = $6
WHERE id = $1 AND attempt = $2 AND status = 'running'
RETURNING *

-- name: request_cancel
UPDATE jobs SET cancel_requested = true, updated_at = $2 WHERE id = $1 RETURNING *

-- name: requeue_for_admin
UPDATE jobs
SET status = 'queued', attempt = 0, run_after = $2, error = NULL, result = NULL,
    refunded = 0, charges = charges + 1, cancel_requested = false, finished_at = NULL,
    worker_id = NULL, lease_expires_at = NULL, updated_at = $2, event_seq = event_seq + 1,
    progress = $3
WHERE id = $1 AND status = 'failed'
RETURNING *

-- Reaper ----------------------------------------------------------------------------------

-- name: expired_leases
SELECT id, attempt FROM jobs
WHERE status = 'running' AND lease_expires_at <= $1
ORDER BY lease_expires_at
LIMIT $2
FOR UPDATE SKIP LOCKED

-- Listing ---------------------------------------------------------------------------------

-- name: user_jobs_page
SELECT * FROM jobs
WHERE user_id = $1 AND id < $2
  AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR kind = $4)
ORDER BY id DESC
LIMIT $5

-- name: admin_jobs_page
SELECT * FROM jobs
WHERE id < $1 AND ($2::text IS NULL OR status = $2)
ORDER BY id DESC
LIMIT $3

-- Reconciliation (reconcile_checks.py): reads only; each check is one statement. A job's
-- ledger refs are `job:<id>` (first round) and `job:<id>/<n>`: the first 36 characters
-- of ref_id are always the job id.

-- name: job_charges_not_matching
WITH charged AS (
    SELECT substr(ref_id, 1, 36) AS job_ref, CAST(-sum(delta) AS bigint) AS total
    FROM credit_entries
    WHERE kind = 'charge' AND ref_type = 'job'
    GROUP BY substr(ref_id, 1, 36)
)
SELECT j.id, j.user_id, j.cost * j.charges AS expected, coalesce(c.total, 0) AS actual
FROM jobs j
LEFT JOIN charged c ON c.job_ref = CAST(j.id AS text)
WHERE coalesce(c.total, 0) <> j.cost * j.charges
ORDER BY j.id

-- name: job_refunds_not_matching
-- Every earlier round ended failed, so it refunded its whole cost.
WITH refunds AS (
    SELECT substr(ref_id, 1, 36) AS job_ref, CAST(sum(delta) AS bigint) AS total
    FROM credit_entries
    WHERE kind = 'refund' AND ref_type = 'job'
    GROUP BY substr(ref_id, 1, 36)
)
SELECT j.id, j.user_id, j.cost * (j.charges - 1) + j.refunded AS expected,
       coalesce(r.total, 0) AS actual
FROM jobs j
LEFT JOIN refunds r ON r.job_ref = CAST(j.id AS text)
WHERE coalesce(r.total, 0) <> j.cost * (j.charges - 1) + j.refunded
ORDER BY j.id

-- name: jobs_not_refunded
-- Failed: everything undelivered goes back. Cancelled: a partial refund is fine, as long
-- as the round's refund entry exists.
SELECT j.id, j.user_id, j.status, j.cost, j.refunded
FROM jobs j
WHERE j.refunded < j.cost
  AND (j.status = 'failed'
       OR (j.status = 'cancelled' AND NOT EXISTS (
            SELECT 1 FROM credit_entries e
            WHERE e.kind = 'refund' AND e.ref_type = 'job'
              AND e.ref_id = CASE WHEN j.charges = 1 THEN CAST(j.id AS text)
                                  ELSE CAST(j.id AS text) || '/' || CAST(j.charges AS text) END)))
ORDER BY j.id

-- name: job_charges_without_job
SELECT e.id, e.user_id, e.ref_id, e.delta
FROM credit_entries e
WHERE e.kind = 'charge' AND e.ref_type = 'job'
  AND NOT EXISTS (SELECT 1 FROM jobs j WHERE CAST(j.id AS text) = substr(e.ref_id, 1, 36))
ORDER BY e.id

-- name: count_jobs
SELECT count(*) FROM jobs

-- name: renew_leases
-- The heartbeat of every job running on worker $2, in one statement: $1 is a JSON array of
-- {id, attempt}; each lease runs to $3 while that attempt still runs there. It answers the
-- jobs renewed, with whether a cancellation was requested meanwhile (from any instance), so
-- it reaches the running job within one heartbeat; a job missing from the answer is lost.
UPDATE jobs SET lease_expires_at = $3, updated_at = $4
FROM jsonb_to_recordset($1::jsonb) AS d(id uuid, attempt integer)
WHERE jobs.id = d.id AND jobs.attempt = d.attempt AND jobs.status = 'running'
    AND jobs.worker_id = $2
RETURNING jobs.id, jobs.cancel_requested

-- name: status_counts
SELECT status, count(*) AS jobs FROM jobs GROUP BY status

-- name: oldest_queued
SELECT min(created_at) AS oldest FROM jobs WHERE status = 'queued'

-- name: count_queued
SELECT count(*) FROM jobs WHERE status = 'queued'

-- Restoring terminal events ----------------------------------------------------------------

-- name: finished_after
-- Finished jobs with (finished_at, id) after ($1, $2) and finished_at <= $3, oldest first.
SELECT * FROM jobs
WHERE finished_at IS NOT NULL AND (finished_at, id) > ($1, $2) AND finished_at <= $3
  AND status IN ('succeeded', 'failed', 'cancelled')
ORDER BY finished_at, id
LIMIT $4
