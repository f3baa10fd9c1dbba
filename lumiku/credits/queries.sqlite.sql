-- SQLite forms of blocks in queries.sql.

-- name: lock_account
-- No row locks in SQLite: the single writer transaction already excludes other writers.
SELECT balance FROM credit_accounts WHERE user_id = $1
