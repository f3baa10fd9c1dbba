-- Tables the Store contract tests use (never shipped).
CREATE TABLE counters (
    id integer PRIMARY KEY,
    n integer NOT NULL CONSTRAINT counters_n_check CHECK (n >= 0)
);

CREATE TABLE samples (
    id uuid PRIMARY KEY,
    label text,
    at timestamptz,
    doc jsonb,
    flag boolean,
    big bigint,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE entries (
    id integer PRIMARY KEY,
    user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind text NOT NULL,
    ref text
);

CREATE UNIQUE INDEX entries_kind_ref_key ON entries (kind, ref) WHERE ref IS NOT NULL;
