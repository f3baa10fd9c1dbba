-- Deliberately NOT equivalent to ../postgres/9201_mismatch.sql (see there).
CREATE TABLE mismatch (
    id UUID PRIMARY KEY NOT NULL,
    amount TEXT NOT NULL,
    note TEXT NOT NULL,
    email TEXT,
    owner UUID,
    kind TEXT NOT NULL,
    seen_at TIMESTAMP NOT NULL,
    extra INTEGER
);
