-- Tables the Store contract tests use (never shipped).
CREATE TABLE counters (
    id INTEGER PRIMARY KEY NOT NULL,
    n INTEGER NOT NULL CONSTRAINT counters_n_check CHECK (n >= 0)
);

CREATE TABLE samples (
    id UUID PRIMARY KEY NOT NULL,
    label TEXT,
    at TIMESTAMP,
    doc JSON,
    flag BOOLEAN,
    big INTEGER,
    created_at TIMESTAMP NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%f000Z', 'now'))
);

CREATE TABLE entries (
    id INTEGER PRIMARY KEY NOT NULL,
    user_id UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    ref TEXT
);

CREATE UNIQUE INDEX entries_kind_ref_key ON entries (kind, ref) WHERE ref IS NOT NULL;
