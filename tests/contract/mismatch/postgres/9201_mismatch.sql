-- Deliberately NOT equivalent to ../sqlite/9201_mismatch.sql: the equivalence test must
-- report every difference below.
CREATE TABLE mismatch (
    id uuid PRIMARY KEY,
    amount bigint NOT NULL,
    note text,
    email text UNIQUE,
    owner uuid REFERENCES users (id),
    kind text NOT NULL CONSTRAINT mismatch_kind_check CHECK (kind <> ''),
    seen_at timestamptz NOT NULL DEFAULT now()
);
