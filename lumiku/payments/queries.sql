-- Payments (SPEC §11). Status moves only by the conditional updates below, so a replayed
-- or concurrent callback finds nothing left to move and credits nothing.

-- name: insert_payment
INSERT INTO payments (id, user_id, merchant_order_id, package_id, credits, amount,
                      payment_method, status, request_id, created_at, updated_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $9, $10)

-- name: record_inquiry
UPDATE payments SET reference = $2, payment_url = $3, updated_at = $4
WHERE id = $1 AND status = 'pending'

-- name: fail_created
-- The inquiry failed: the payment never reached Duitku's buyer.
UPDATE payments SET status = 'failed', failure = $2, updated_at = $3
WHERE id = $1 AND status = 'pending'

-- name: payment_by_order
SELECT id, user_id, merchant_order_id, package_id, credits, amount, payment_method, status,
       reference, payment_url, result_code, failure, created_at, updated_at, expires_at, paid_at
FROM payments WHERE merchant_order_id = $1

-- name: settle_success
-- pending → success; also expired (on our clock only) and failed by our own inquiry (a
-- timeout is ambiguous: Duitku may have taken the order), since Duitku says it was paid.
-- Never a payment Duitku itself reported failed (result_code set), nor a success twice.
UPDATE payments SET status = 'success', result_code = $2, reference = COALESCE($3, reference),
                    paid_at = $4, updated_at = $4
WHERE merchant_order_id = $1
  AND (status IN ('pending', 'expired') OR (status = 'failed' AND result_code IS NULL))
RETURNING id, user_id, credits

-- name: settle_failed
-- Also records Duitku's verdict on a payment our inquiry already gave up on.
UPDATE payments SET status = 'failed', result_code = $2, failure = $3, updated_at = $4
WHERE merchant_order_id = $1
  AND (status IN ('pending', 'expired') OR (status = 'failed' AND result_code IS NULL))
RETURNING id

-- name: expire_due
UPDATE payments SET status = 'expired', updated_at = $1
WHERE status = 'pending' AND expires_at <= $1
RETURNING merchant_order_id

-- name: success_without_one_purchase
-- Reconcile: every success payment has exactly one purchase entry of its credits.
SELECT p.merchant_order_id, p.user_id, p.credits AS expected,
       COALESCE(SUM(e.delta), 0) AS actual, COUNT(e.id) AS entries
FROM payments p
LEFT JOIN credit_entries e
       ON e.kind = 'purchase' AND e.ref_type = 'payment' AND e.ref_id = p.merchant_order_id
      AND e.user_id = p.user_id
WHERE p.status = 'success'
GROUP BY p.merchant_order_id, p.user_id, p.credits
HAVING COUNT(e.id) <> 1 OR COALESCE(SUM(e.delta), 0) <> p.credits
ORDER BY p.merchant_order_id

-- name: purchase_without_success
-- Reconcile: no purchase entry lacks a success payment of the same user.
SELECT e.id, e.user_id, e.ref_type, e.ref_id, e.delta
FROM credit_entries e
LEFT JOIN payments p
       ON e.ref_type = 'payment' AND p.merchant_order_id = e.ref_id
      AND p.user_id = e.user_id AND p.status = 'success'
WHERE e.kind = 'purchase' AND p.id IS NULL
ORDER BY e.id
