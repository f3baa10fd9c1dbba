-- Statements of the Store contract tests.

-- name: insert_user
INSERT INTO users (id, email, password_hash, role) VALUES ($1, $2, $3, $4)

-- name: insert_user_without_hash
INSERT INTO users (id, email, password_hash) VALUES ($1, $2, NULL)

-- name: user_by_id
SELECT * FROM users WHERE id = $1

-- name: user_emails
SELECT email FROM users ORDER BY email

-- name: count_users
SELECT count(*) FROM users

-- name: rename_users
UPDATE users SET name = $1

-- name: seed_counter
INSERT INTO counters (id, n) VALUES ($1, $2)

-- name: decrement_counter
UPDATE counters SET n = n - 1 WHERE id = $1 AND n >= 1

-- name: set_counter
UPDATE counters SET n = $2 WHERE id = $1

-- name: counter_value
SELECT n FROM counters WHERE id = $1

-- name: backend_pid
SELECT pg_backend_pid()

-- name: insert_sample
INSERT INTO samples (id, label, at, doc, flag, big) VALUES ($1, $2, $3, $4, $5, $6)
RETURNING *

-- name: sample_by_id
SELECT * FROM samples WHERE id = $1

-- name: sample_labels_after
SELECT label FROM samples WHERE at > $1 ORDER BY at

-- name: insert_entry
INSERT INTO entries (id, user_id, kind, ref) VALUES ($1, $2, $3, $4)

-- name: literal_with_dollar
-- The '$1' inside the literal is text, not a parameter.
SELECT '$1 and ''$2''' AS text, $1 AS value

-- name: table_exists
SELECT to_regclass($1::text) IS NOT NULL

-- name: tamper_checksum
UPDATE schema_migrations SET checksum = 'tampered' WHERE name = $1

-- name: sessions_waiting_on_locks
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND wait_event_type = 'Lock'

-- name: sessions_idle_in_transaction
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND state LIKE 'idle in transaction%'

-- name: sleep
SELECT pg_sleep($1)

-- name: migration_rows
SELECT version, name, applied_at, checksum FROM schema_migrations ORDER BY version

-- name: counter_for_update
SELECT n FROM counters WHERE id = $1 FOR UPDATE

-- name: statement_timeout
SELECT current_setting('statement_timeout')

-- name: as_integer
SELECT $1::integer

-- name: terminate_listeners
SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = current_database() AND application_name = 'lumiku-listen'
