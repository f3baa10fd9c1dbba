-- The credits ledger (SPEC §5): one balance per user and the append-only entries that
-- explain it. The CHECKs make an overdraft impossible and the partial UNIQUE index makes a
-- second charge, refund or purchase for the same reference impossible, even under bugs.
CREATE TABLE credit_accounts (
    user_id UUID PRIMARY KEY NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    balance INTEGER NOT NULL DEFAULT 0 CONSTRAINT credit_accounts_balance_check CHECK (balance >= 0),
    updated_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);

-- AUTOINCREMENT: ids are never reused, so history cursors stay valid.
CREATE TABLE credit_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
    user_id UUID NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    delta INTEGER NOT NULL CONSTRAINT credit_entries_delta_check CHECK (delta <> 0),
    balance_after INTEGER NOT NULL
        CONSTRAINT credit_entries_balance_after_check CHECK (balance_after >= 0),
    kind TEXT NOT NULL CONSTRAINT credit_entries_kind_check
        CHECK (kind IN ('welcome', 'grant', 'purchase', 'charge', 'refund', 'adjustment')),
    ref_type TEXT,
    ref_id TEXT,
    note TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now')),
    -- A reference is a (type, id) pair: with one half missing the UNIQUE index cannot bite.
    CONSTRAINT credit_entries_ref_check CHECK ((ref_type IS NULL) = (ref_id IS NULL))
);

CREATE UNIQUE INDEX credit_entries_ref_key ON credit_entries (kind, ref_type, ref_id)
    WHERE ref_id IS NOT NULL;

-- History pages: newest first per user.
CREATE INDEX credit_entries_user_id_idx ON credit_entries (user_id, id DESC);
