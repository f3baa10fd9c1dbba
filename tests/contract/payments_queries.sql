-- Raw writes the payment tests use to break what the service never breaks.

-- name: delete_purchase
DELETE FROM credit_entries WHERE kind = 'purchase' AND ref_id = $1

-- name: drop_ref_index
DROP INDEX credit_entries_ref_key

-- name: duplicate_purchase
INSERT INTO credit_entries (user_id, delta, balance_after, kind, ref_type, ref_id, note, created_at)
SELECT user_id, delta, balance_after, kind, ref_type, ref_id, note, created_at
FROM credit_entries WHERE kind = 'purchase' AND ref_id = $1

-- name: purchase_entries
SELECT id, user_id, delta, ref_id FROM credit_entries WHERE kind = 'purchase' ORDER BY id
