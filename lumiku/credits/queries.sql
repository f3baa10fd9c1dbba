-- The credits ledger (SPEC §5). Every write runs in the caller's transaction; the CHECK on
-- credit_accounts.balance and the credit_entries_ref_key index are the last line of defence.

-- name: open_account
INSERT INTO credit_accounts (user_id, balance, updated_at) VALUES ($1, 0, $2)
ON CONFLICT (user_id) DO NOTHING

-- name: open_and_lock_account
-- Creates the account when missing and locks its row either way (the no-op update takes
-- the row lock on PostgreSQL), so the balance returned stays true until the commit.
INSERT INTO credit_accounts (user_id, balance, updated_at) VALUES ($1, 0, $2)
ON CONFLICT (user_id) DO UPDATE SET balance = credit_accounts.balance
RETURNING balance

-- name: lock_account
SELECT balance FROM credit_accounts WHERE user_id = $1 FOR UPDATE

-- name: add_to_balance
UPDATE credit_accounts SET balance = balance + $2, updated_at = $3
WHERE user_id = $1
RETURNING balance

-- name: take_from_balance
-- The charge: one conditional update, so two concurrent charges can never both pass.
UPDATE credit_accounts SET balance = balance - $2, updated_at = $3
WHERE user_id = $1 AND balance >= $2
RETURNING balance

-- name: insert_entry
INSERT INTO credit_entries (user_id, delta, balance_after, kind, ref_type, ref_id, note, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id

-- name: insert_entry_once
-- No row comes back when an entry with this (kind, ref_type, ref_id) exists: the index
-- decides, without the error that would abort a PostgreSQL transaction.
INSERT INTO credit_entries (user_id, delta, balance_after, kind, ref_type, ref_id, note, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (kind, ref_type, ref_id) WHERE ref_id IS NOT NULL DO NOTHING
RETURNING id

-- name: account_balance
SELECT balance FROM credit_accounts WHERE user_id = $1

-- name: spent_since
-- Charges minus refunds written since $2 (the dashboard's spend this month).
SELECT coalesce(sum(-delta), 0) FROM credit_entries
WHERE user_id = $1 AND kind IN ('charge', 'refund') AND created_at >= $2

-- name: history_page
SELECT id, user_id, delta, balance_after, kind, ref_type, ref_id, note, created_at
FROM credit_entries
WHERE user_id = $1 AND id < $2
ORDER BY id DESC
LIMIT $3

-- Reconciliation (reconcile.py): reads only; each check is one statement, one snapshot.

-- name: count_accounts
SELECT count(*) FROM credit_accounts

-- name: count_entries
SELECT count(*) FROM credit_entries

-- name: balances_not_matching_entries
SELECT a.user_id, a.balance, coalesce(sum(e.delta), 0) AS total
FROM credit_accounts a
LEFT JOIN credit_entries e ON e.user_id = a.user_id
GROUP BY a.user_id, a.balance
HAVING a.balance <> coalesce(sum(e.delta), 0)

-- name: newest_entries_not_matching_balance
SELECT a.user_id, a.balance, e.balance_after, e.id
FROM credit_accounts a
JOIN credit_entries e ON e.user_id = a.user_id
WHERE e.id = (SELECT max(n.id) FROM credit_entries n WHERE n.user_id = a.user_id)
  AND e.balance_after <> a.balance

-- name: entries_without_account
SELECT e.user_id, count(*) AS entries
FROM credit_entries e
WHERE NOT EXISTS (SELECT 1 FROM credit_accounts a WHERE a.user_id = e.user_id)
GROUP BY e.user_id

-- name: entries_with_wrong_sign
-- Charges take, refunds and grants give; only an adjustment may go either way.
SELECT id, user_id, kind, delta
FROM credit_entries
WHERE (kind = 'charge' AND delta > 0)
   OR (kind IN ('welcome', 'grant', 'purchase', 'refund') AND delta < 0)
ORDER BY id

-- name: duplicate_refs
SELECT kind, ref_type, ref_id, count(*) AS entries
FROM credit_entries
WHERE ref_id IS NOT NULL
GROUP BY kind, ref_type, ref_id
HAVING count(*) > 1
