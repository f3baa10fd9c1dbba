-- Statements of the ledger's contract tests: users to own accounts, and raw writes that
-- go around the domain functions on purpose.

-- name: insert_user
INSERT INTO users (id, email, password_hash) VALUES ($1, $2, 'not-a-hash')

-- name: set_balance
UPDATE credit_accounts SET balance = $2 WHERE user_id = $1

-- name: insert_raw_entry
INSERT INTO credit_entries (user_id, delta, balance_after, kind, ref_type, ref_id, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)

-- name: entries_of
SELECT id, user_id, delta, balance_after, kind, ref_type, ref_id, note, created_at
FROM credit_entries WHERE user_id = $1 ORDER BY id

-- name: count_entries
SELECT count(*) FROM credit_entries

-- name: count_accounts
SELECT count(*) FROM credit_accounts

-- name: sum_of_entries
SELECT coalesce(sum(delta), 0) FROM credit_entries WHERE user_id = $1

-- name: entries_with_ref
SELECT count(*) FROM credit_entries WHERE kind = $1 AND ref_type = $2 AND ref_id = $3

-- name: drop_ref_index
DROP INDEX credit_entries_ref_key
