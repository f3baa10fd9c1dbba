-- Credit purchases through Duitku (SPEC §11). A payment moves pending → success | failed |
-- expired; only pending (or expired, when Duitku reports it paid after all) can become
-- success, by one conditional update committed with the `purchase` ledger entry.
CREATE TABLE payments (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    merchant_order_id text NOT NULL CONSTRAINT payments_merchant_order_id_key UNIQUE,
    package_id text NOT NULL,
    credits bigint NOT NULL CONSTRAINT payments_credits_check CHECK (credits > 0),
    amount bigint NOT NULL CONSTRAINT payments_amount_check CHECK (amount > 0),
    payment_method text NOT NULL,
    status text NOT NULL CONSTRAINT payments_status_check
        CHECK (status IN ('pending', 'success', 'failed', 'expired')),
    reference text,
    payment_url text,
    result_code text,
    failure text,
    request_id text,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    paid_at timestamptz
);

-- The expiry task: pending payments by deadline.
CREATE INDEX payments_pending_idx ON payments (expires_at) WHERE status = 'pending';
CREATE INDEX payments_user_id_idx ON payments (user_id, created_at DESC);
