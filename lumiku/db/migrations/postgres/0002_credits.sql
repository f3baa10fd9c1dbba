-- The credits ledger (SPEC §5): one balance per user and the append-only entries that
-- explain it. The CHECKs make an overdraft impossible and the partial UNIQUE index makes a
-- second charge, refund or purchase for the same reference impossible, even under bugs.
CREATE TABLE credit_accounts (
    user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    balance bigint NOT NULL DEFAULT 0 CONSTRAINT credit_accounts_balance_check CHECK (balance >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE credit_entries (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES credit_accounts (user_id) ON DELETE CASCADE,
    delta bigint NOT NULL CONSTRAINT credit_entries_delta_check CHECK (delta <> 0),
    balance_after bigint NOT NULL
        CONSTRAINT credit_entries_balance_after_check CHECK (balance_after >= 0),
    kind text NOT NULL CONSTRAINT credit_entries_kind_check
        CHECK (kind IN ('welcome', 'grant', 'purchase', 'charge', 'refund', 'adjustment')),
    ref_type text,
    ref_id text,
    note text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    -- A reference is a (type, id) pair: with one half missing the UNIQUE index cannot bite.
    CONSTRAINT credit_entries_ref_check CHECK ((ref_type IS NULL) = (ref_id IS NULL))
);

CREATE UNIQUE INDEX credit_entries_ref_key ON credit_entries (kind, ref_type, ref_id)
    WHERE ref_id IS NOT NULL;

-- History pages: newest first per user.
CREATE INDEX credit_entries_user_id_idx ON credit_entries (user_id, id DESC);
