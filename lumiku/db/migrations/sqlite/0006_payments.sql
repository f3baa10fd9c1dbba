-- Credit purchases through Duitku (SPEC §11). A payment moves pending → success | failed |
-- expired; only pending (or expired, when Duitku reports it paid after all) can become
-- success, by one conditional update committed with the `purchase` ledger entry.
CREATE TABLE payments (
    id UUID PRIMARY KEY NOT NULL,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    merchant_order_id TEXT NOT NULL CONSTRAINT payments_merchant_order_id_key UNIQUE,
    package_id TEXT NOT NULL,
    credits INTEGER NOT NULL CONSTRAINT payments_credits_check CHECK (credits > 0),
    amount INTEGER NOT NULL CONSTRAINT payments_amount_check CHECK (amount > 0),
    payment_method TEXT NOT NULL,
    status TEXT NOT NULL CONSTRAINT payments_status_check
        CHECK (status IN ('pending', 'success', 'failed', 'expired')),
    reference TEXT,
    payment_url TEXT,
    result_code TEXT,
    failure TEXT,
    request_id TEXT,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    expires_at TIMESTAMP NOT NULL,
    paid_at TIMESTAMP
);

-- The expiry task: pending payments by deadline.
CREATE INDEX payments_pending_idx ON payments (expires_at) WHERE status = 'pending';
CREATE INDEX payments_user_id_idx ON payments (user_id, created_at DESC);
