-- The job queue (SPEC §6): every generation is a row here, committed together with the
-- charge that pays for it. Ids are UUIDv7 made in Python, so they sort by creation time.
-- `cost` is what one round of the job charged (0 for users who pay nothing); `charges`
-- counts the rounds (1 + admin retries); `refunded` is what the current round gave back.
CREATE TABLE jobs (
    id UUID PRIMARY KEY NOT NULL,
    kind TEXT NOT NULL,
    app TEXT NOT NULL,
    user_id UUID NOT NULL REFERENCES users (id),
    status TEXT NOT NULL CONSTRAINT jobs_status_check
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    cancel_requested BOOLEAN NOT NULL DEFAULT 0,
    priority INTEGER NOT NULL DEFAULT 0,
    payload JSON NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0 CONSTRAINT jobs_attempt_check CHECK (attempt >= 0),
    max_attempts INTEGER NOT NULL DEFAULT 3
        CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 1),
    run_after TIMESTAMP NOT NULL,
    lease_expires_at TIMESTAMP,
    worker_id TEXT,
    progress JSON NOT NULL,
    result JSON,
    error JSON,
    cost INTEGER NOT NULL CONSTRAINT jobs_cost_check CHECK (cost >= 0),
    refunded INTEGER NOT NULL DEFAULT 0
        CONSTRAINT jobs_refunded_check CHECK (refunded >= 0 AND refunded <= cost),
    charges INTEGER NOT NULL DEFAULT 1 CONSTRAINT jobs_charges_check CHECK (charges >= 1),
    event_seq INTEGER NOT NULL DEFAULT 0 CONSTRAINT jobs_event_seq_check CHECK (event_seq >= 0),
    request_id TEXT,
    idempotency_key TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);

-- Claiming: the due queued jobs of one kind, highest priority first, then oldest (by id).
CREATE INDEX jobs_claim_idx ON jobs (status, kind, priority DESC, id);
-- A user's jobs, newest first (ids are time-ordered).
CREATE INDEX jobs_user_id_idx ON jobs (user_id, id);
-- The per-user cap counts running jobs; the reaper looks for expired leases.
CREATE INDEX jobs_running_user_idx ON jobs (user_id) WHERE status = 'running';
CREATE INDEX jobs_running_lease_idx ON jobs (lease_expires_at) WHERE status = 'running';
-- The admin's dead-letter listing.
CREATE INDEX jobs_status_id_idx ON jobs (status, id);

-- Idempotency-Key (SPEC §6): one row per (user, key). The primary key decides a race
-- between two requests with the same key; 'processing' until the job commits.
CREATE TABLE idempotency_keys (
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    job_id UUID REFERENCES jobs (id),
    status TEXT NOT NULL CONSTRAINT idempotency_keys_status_check
        CHECK (status IN ('processing', 'done')),
    response JSON,
    created_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    PRIMARY KEY (user_id, key)
);

CREATE INDEX idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
